//! `COPY … TO STDOUT (FORMAT binary)` decoded straight into Arrow builders.
//!
//! The binary format is a fixed header, then one tuple per row: a 16-bit
//! field count and, per field, a 32-bit length (-1 for NULL) and the value in
//! the type's binary send format. [`TupleDecoder`] does no I/O: it is fed
//! byte chunks as they arrive and consumes every complete tuple, so a tuple
//! split across network chunks simply waits for the next one.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder,
    Int16Builder, Int32Builder, Int64Builder, IntervalMonthDayNanoBuilder, ListArray, StringBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, FieldRef, IntervalMonthDayNano};

use super::numeric;

/// Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
pub const EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
pub const EPOCH_MICROS: i64 = 946_684_800_000_000;

pub(super) const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// How the values of one column are read.
#[derive(Debug, Clone, PartialEq)]
pub enum Decode {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    /// `numeric(p,s)` with p ≤ 38, exactly into `Decimal128(p,s)`.
    Decimal {
        precision: u8,
        scale: i8,
    },
    /// Any other numeric, exactly as text.
    NumericText,
    /// text, varchar, char, name, enum labels, json, and values cast to text.
    Text,
    /// jsonb: a version byte, then the text.
    Jsonb,
    Bytea,
    /// `point`: two float8, read as an EWKB POINT (SRID 0), like a spatial column.
    Point,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Interval,
    Uuid,
    /// One-dimensional arrays of the element decoding.
    Array(Box<Decode>),
}

impl Decode {
    /// The Arrow type the values become.
    pub fn arrow_type(&self) -> DataType {
        use arrow::datatypes::{Field, IntervalUnit, TimeUnit};
        match self {
            Decode::Bool => DataType::Boolean,
            Decode::Int16 => DataType::Int16,
            Decode::Int32 => DataType::Int32,
            Decode::Int64 => DataType::Int64,
            Decode::Float32 => DataType::Float32,
            Decode::Float64 => DataType::Float64,
            Decode::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
            Decode::NumericText | Decode::Text | Decode::Jsonb | Decode::Uuid => DataType::Utf8,
            Decode::Bytea | Decode::Point => DataType::Binary,
            Decode::Date => DataType::Date32,
            Decode::Time => DataType::Time64(TimeUnit::Microsecond),
            Decode::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Decode::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Decode::Interval => DataType::Interval(IntervalUnit::MonthDayNano),
            Decode::Array(e) => DataType::List(Arc::new(Field::new("item", e.arrow_type(), true))),
        }
    }
}

/// Column builders for one batch.
enum Builder {
    Bool(BooleanBuilder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal(Decimal128Builder, i8),
    Text(StringBuilder, TextKind),
    Bytea(BinaryBuilder),
    Point(BinaryBuilder),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Interval(IntervalMonthDayNanoBuilder),
    List {
        field: FieldRef,
        offsets: Vec<i32>,
        valid: Vec<bool>,
        child: Box<Builder>,
    },
}

#[derive(Clone, Copy)]
enum TextKind {
    Plain,
    Numeric,
    Jsonb,
    Uuid,
}

impl Builder {
    fn new(d: &Decode) -> Builder {
        match d {
            Decode::Bool => Builder::Bool(BooleanBuilder::new()),
            Decode::Int16 => Builder::Int16(Int16Builder::new()),
            Decode::Int32 => Builder::Int32(Int32Builder::new()),
            Decode::Int64 => Builder::Int64(Int64Builder::new()),
            Decode::Float32 => Builder::Float32(Float32Builder::new()),
            Decode::Float64 => Builder::Float64(Float64Builder::new()),
            Decode::Decimal { precision, scale } => Builder::Decimal(
                Decimal128Builder::new().with_data_type(DataType::Decimal128(*precision, *scale)),
                *scale,
            ),
            Decode::Text => Builder::Text(StringBuilder::new(), TextKind::Plain),
            Decode::NumericText => Builder::Text(StringBuilder::new(), TextKind::Numeric),
            Decode::Jsonb => Builder::Text(StringBuilder::new(), TextKind::Jsonb),
            Decode::Uuid => Builder::Text(StringBuilder::new(), TextKind::Uuid),
            Decode::Bytea => Builder::Bytea(BinaryBuilder::new()),
            Decode::Point => Builder::Point(BinaryBuilder::new()),
            Decode::Date => Builder::Date(Date32Builder::new()),
            Decode::Time => Builder::Time(Time64MicrosecondBuilder::new()),
            Decode::Timestamp => Builder::Timestamp(TimestampMicrosecondBuilder::new()),
            Decode::TimestampTz => Builder::Timestamp(TimestampMicrosecondBuilder::new().with_timezone("UTC")),
            Decode::Interval => Builder::Interval(IntervalMonthDayNanoBuilder::new()),
            Decode::Array(e) => {
                let DataType::List(field) = d.arrow_type() else {
                    unreachable!("an array decodes to a list")
                };
                Builder::List {
                    field,
                    offsets: vec![0],
                    valid: Vec::new(),
                    child: Box::new(Builder::new(e)),
                }
            }
        }
    }

    fn append_null(&mut self) {
        match self {
            Builder::Bool(b) => b.append_null(),
            Builder::Int16(b) => b.append_null(),
            Builder::Int32(b) => b.append_null(),
            Builder::Int64(b) => b.append_null(),
            Builder::Float32(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::Decimal(b, _) => b.append_null(),
            Builder::Text(b, _) => b.append_null(),
            Builder::Bytea(b) | Builder::Point(b) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Time(b) => b.append_null(),
            Builder::Timestamp(b) => b.append_null(),
            Builder::Interval(b) => b.append_null(),
            Builder::List { offsets, valid, .. } => {
                offsets.push(*offsets.last().unwrap_or(&0));
                valid.push(false);
            }
        }
    }

    /// Appends one value. On error a NULL takes its place so the columns stay
    /// aligned; the caller drops the row.
    fn append(&mut self, v: &[u8]) -> Result<(), String> {
        let r = self.try_append(v);
        if r.is_err() {
            self.append_null();
        }
        r
    }

    fn try_append(&mut self, v: &[u8]) -> Result<(), String> {
        match self {
            Builder::Bool(b) => b.append_value(fixed::<1>(v)?[0] != 0),
            Builder::Int16(b) => b.append_value(i16::from_be_bytes(fixed(v)?)),
            Builder::Int32(b) => b.append_value(i32::from_be_bytes(fixed(v)?)),
            Builder::Int64(b) => b.append_value(i64::from_be_bytes(fixed(v)?)),
            Builder::Float32(b) => b.append_value(f32::from_be_bytes(fixed(v)?)),
            Builder::Float64(b) => b.append_value(f64::from_be_bytes(fixed(v)?)),
            Builder::Decimal(b, scale) => b.append_value(numeric::to_i128(v, *scale)?),
            Builder::Text(b, kind) => match kind {
                TextKind::Plain => b.append_value(utf8(v)?),
                TextKind::Jsonb => match v.split_first() {
                    Some((1, rest)) => b.append_value(utf8(rest)?),
                    _ => return Err("jsonb value in an unknown binary version".into()),
                },
                TextKind::Numeric => b.append_value(numeric::to_text(v)?),
                TextKind::Uuid => b.append_value(uuid_text(&fixed::<16>(v)?)),
            },
            Builder::Bytea(b) => b.append_value(v),
            Builder::Point(b) => {
                let v: [u8; 16] = fixed(v)?;
                let x = f64::from_be_bytes(v[0..8].try_into().unwrap_or_default());
                let y = f64::from_be_bytes(v[8..16].try_into().unwrap_or_default());
                b.append_value(sluice_core::spatial::point_ewkb(x, y))
            }
            Builder::Date(b) => b.append_value(shift_days(i32::from_be_bytes(fixed(v)?), EPOCH_DAYS)),
            Builder::Time(b) => b.append_value(i64::from_be_bytes(fixed(v)?)),
            Builder::Timestamp(b) => b.append_value(shift_micros(i64::from_be_bytes(fixed(v)?), EPOCH_MICROS)),
            Builder::Interval(b) => {
                let v: [u8; 16] = fixed(v)?;
                let micros = i64::from_be_bytes(v[0..8].try_into().unwrap_or_default());
                let days = i32::from_be_bytes(v[8..12].try_into().unwrap_or_default());
                let months = i32::from_be_bytes(v[12..16].try_into().unwrap_or_default());
                let nanos = micros
                    .checked_mul(1000)
                    .ok_or_else(|| "interval beyond the nanosecond range of Arrow intervals".to_string())?;
                b.append_value(IntervalMonthDayNano::new(months, days, nanos))
            }
            Builder::List {
                offsets, valid, child, ..
            } => {
                let n = read_array(v, child)?;
                let last = *offsets.last().unwrap_or(&0);
                offsets.push(last + n);
                valid.push(true);
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Int16(b) => Arc::new(b.finish()),
            Builder::Int32(b) => Arc::new(b.finish()),
            Builder::Int64(b) => Arc::new(b.finish()),
            Builder::Float32(b) => Arc::new(b.finish()),
            Builder::Float64(b) => Arc::new(b.finish()),
            Builder::Decimal(b, _) => Arc::new(b.finish()),
            Builder::Text(b, _) => Arc::new(b.finish()),
            Builder::Bytea(b) | Builder::Point(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Time(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish()),
            Builder::Interval(b) => Arc::new(b.finish()),
            Builder::List {
                field,
                offsets,
                valid,
                child,
            } => {
                let offsets = OffsetBuffer::new(std::mem::replace(offsets, vec![0]).into());
                let nulls = NullBuffer::from(std::mem::take(valid));
                let nulls = (nulls.null_count() > 0).then_some(nulls);
                Arc::new(ListArray::new(field.clone(), offsets, child.finish(), nulls))
            }
        }
    }
}

/// Reads a one-dimensional array's elements into `child`; returns how many.
fn read_array(v: &[u8], child: &mut Builder) -> Result<i32, String> {
    let mut r = Reader { buf: v, pos: 0 };
    let ndim = r.i32()?;
    let _has_nulls = r.i32()?;
    let _elem_oid = r.i32()?;
    match ndim {
        0 => Ok(0),
        1 => {
            let n = r.i32()?;
            let _lower = r.i32()?;
            let mut first_err = None;
            for _ in 0..n {
                let len = r.i32()?;
                if len < 0 {
                    child.append_null();
                } else {
                    let e = r.take(len as usize)?;
                    if let Err(e) = child.append(e) {
                        first_err.get_or_insert(e);
                    }
                }
            }
            match first_err {
                Some(e) => Err(format!("array element: {e}")),
                None => Ok(n),
            }
        }
        n => Err(format!(
            "{n}-dimensional arrays are not supported; read the column as text with a query source (col::text)"
        )),
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        let end = end.ok_or_else(|| "truncated value".to_string())?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(fixed(self.take(4)?)?))
    }
}

fn fixed<const N: usize>(v: &[u8]) -> Result<[u8; N], String> {
    v.try_into()
        .map_err(|_| format!("expected {N} bytes in the binary value, got {}", v.len()))
}

fn utf8(v: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(v).map_err(|e| format!("text is not valid UTF-8: {e}"))
}

/// Moves a day number by `delta` days, keeping ±infinity (the extremes) in place.
pub fn shift_days(d: i32, delta: i32) -> i32 {
    match d {
        i32::MAX | i32::MIN => d,
        d => d.saturating_add(delta),
    }
}

/// Moves a microsecond timestamp by `delta`, keeping ±infinity (the extremes) in place.
pub fn shift_micros(t: i64, delta: i64) -> i64 {
    match t {
        i64::MAX | i64::MIN => t,
        t => t.saturating_add(delta),
    }
}

/// Canonical text form of a UUID.
pub fn uuid_text(b: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(HEX[(byte >> 4) as usize] as char);
        s.push(HEX[(byte & 15) as usize] as char);
    }
    s
}

/// Decodes binary COPY output into column arrays, a batch at a time.
pub struct TupleDecoder {
    builders: Vec<Builder>,
    header_done: bool,
    rows: usize,
    /// Rows refused in the current batch: (row index, column, reason).
    bad: Vec<(usize, usize, String)>,
    finished: bool,
}

impl TupleDecoder {
    pub fn new(columns: &[Decode]) -> Self {
        TupleDecoder {
            builders: columns.iter().map(Builder::new).collect(),
            header_done: false,
            rows: 0,
            bad: Vec::new(),
            finished: false,
        }
    }

    /// A decoder for tuples without the stream's header before them (the
    /// rows of a batch passed through undecoded).
    pub fn headerless(mut self) -> Self {
        self.header_done = true;
        self
    }

    /// Rows decoded into the current batch.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Whether the trailer has been seen.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Consumes complete tuples from `buf` until the current batch holds
    /// `max_rows` rows; returns the bytes consumed. The rest of `buf` is an
    /// incomplete tuple (or the rows beyond `max_rows`).
    pub fn decode(&mut self, buf: &[u8], max_rows: usize) -> Result<usize, String> {
        let mut pos = 0;
        if !self.header_done {
            if buf.len() < SIGNATURE.len() + 8 {
                return Ok(0);
            }
            if &buf[..SIGNATURE.len()] != SIGNATURE {
                return Err("the server's COPY output is not in binary format".into());
            }
            let ext = i32::from_be_bytes(fixed(&buf[15..19])?);
            let start = 19 + ext.max(0) as usize;
            if buf.len() < start {
                return Ok(0);
            }
            pos = start;
            self.header_done = true;
        }
        let ncols = self.builders.len();
        while self.rows < max_rows && !self.finished {
            let Some(end) = tuple_end(&buf[pos..], ncols)? else {
                break;
            };
            let tuple = &buf[pos..pos + end];
            pos += end;
            let count = i16::from_be_bytes([tuple[0], tuple[1]]);
            if count == -1 {
                self.finished = true;
                break;
            }
            let mut at = 2;
            for (c, b) in self.builders.iter_mut().enumerate() {
                let len = i32::from_be_bytes([tuple[at], tuple[at + 1], tuple[at + 2], tuple[at + 3]]);
                at += 4;
                if len < 0 {
                    b.append_null();
                } else {
                    let v = &tuple[at..at + len as usize];
                    at += len as usize;
                    if let Err(e) = b.append(v) {
                        self.bad.push((self.rows, c, e));
                    }
                }
            }
            self.rows += 1;
        }
        Ok(pos)
    }

    /// Ends the current batch: its column arrays, and the rows refused in it.
    pub fn finish_batch(&mut self) -> (Vec<ArrayRef>, Vec<(usize, usize, String)>) {
        self.rows = 0;
        let arrays = self.builders.iter_mut().map(Builder::finish).collect();
        (arrays, std::mem::take(&mut self.bad))
    }
}

/// The length of the complete tuple at the start of `buf`, if it is all
/// there (2 for the trailer).
pub(super) fn tuple_end(buf: &[u8], ncols: usize) -> Result<Option<usize>, String> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let count = i16::from_be_bytes([buf[0], buf[1]]);
    if count == -1 {
        return Ok(Some(2));
    }
    if count as usize != ncols {
        return Err(format!("a COPY tuple has {count} fields, expected {ncols}"));
    }
    let mut at = 2;
    for _ in 0..ncols {
        if buf.len() < at + 4 {
            return Ok(None);
        }
        let len = i32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
        at += 4;
        if len > 0 {
            at += len as usize;
        }
    }
    Ok((buf.len() >= at).then_some(at))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};

    /// One binary `COPY` tuple holding `fields` (`None` for NULL).
    pub(in crate::postgres) fn tuple(fields: &[Option<&[u8]>]) -> Vec<u8> {
        let mut t = (fields.len() as i16).to_be_bytes().to_vec();
        for f in fields {
            match f {
                None => t.extend((-1i32).to_be_bytes()),
                Some(v) => {
                    t.extend((v.len() as i32).to_be_bytes());
                    t.extend(*v);
                }
            }
        }
        t
    }

    #[test]
    fn tuples_split_across_chunks_decode_once_complete() {
        let mut data = SIGNATURE.to_vec();
        data.extend([0; 8]);
        data.extend(tuple(&[Some(&7i32.to_be_bytes()), Some(b"caf\xc3\xa9")]));
        data.extend(tuple(&[None, Some(b"x")]));
        data.extend((-1i16).to_be_bytes());
        let mut d = TupleDecoder::new(&[Decode::Int32, Decode::Text]);
        // Feed one byte short of the first tuple: nothing decodes yet.
        let first_end = 19 + 2 + 4 + 4 + 4 + 5;
        let used = d.decode(&data[..first_end - 1], 100).unwrap();
        assert_eq!(d.rows(), 0);
        let used2 = d.decode(&data[used..], 100).unwrap();
        assert!(d.finished());
        assert_eq!(used + used2, data.len());
        let (arrays, bad) = d.finish_batch();
        assert!(bad.is_empty());
        let ints = arrays[0].as_primitive::<arrow::datatypes::Int32Type>();
        assert_eq!((ints.value(0), ints.is_null(1)), (7, true));
        assert_eq!(arrays[1].as_string::<i32>().value(0), "café");
    }

    #[test]
    fn a_value_that_does_not_fit_is_named_and_the_columns_stay_aligned() {
        let mut data = SIGNATURE.to_vec();
        data.extend([0; 8]);
        data.extend(tuple(&[Some(b"\xff\xfe")]));
        data.extend(tuple(&[Some(b"ok")]));
        let mut d = TupleDecoder::new(&[Decode::Text]);
        d.decode(&data, 100).unwrap();
        let (arrays, bad) = d.finish_batch();
        assert_eq!(arrays[0].len(), 2);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, 0);
        assert!(bad[0].2.contains("UTF-8"), "{}", bad[0].2);
    }

    #[test]
    fn uuid_text_is_canonical() {
        let b = [
            0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11,
        ];
        assert_eq!(uuid_text(&b), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    }
}
