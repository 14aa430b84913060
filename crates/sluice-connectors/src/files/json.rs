//! JSON and NDJSON: schema inference from sampled records and decoding with
//! arrow-json in strict mode, so a field the schema does not know is a
//! rejection rather than silently dropped.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::json::reader::infer_json_schema_from_iterator;
use arrow::record_batch::RecordBatch;

use super::decode::{Inference, RecordDecoder};
use super::framing::{FrameKind, Framer};

/// Decodes whitespace-separated JSON objects against a fixed schema.
pub(crate) struct JsonDecoder {
    schema: SchemaRef,
    inference: Inference,
}

impl RecordDecoder for JsonDecoder {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn decode(&self, bytes: &[u8], records: usize) -> Result<RecordBatch, String> {
        let mut d = arrow::json::ReaderBuilder::new(self.schema.clone())
            .with_batch_size(records + 1)
            .with_strict_mode(true)
            .with_coerce_primitive(true)
            .build_decoder()
            .map_err(|e| e.to_string())?;
        let mut off = 0;
        while off < bytes.len() {
            let n = d.decode(&bytes[off..]).map_err(|e| self.explain(e))?;
            if n == 0 {
                break;
            }
            off += n;
        }
        let batch = match d.flush().map_err(|e| self.explain(e))? {
            Some(b) => b,
            None => RecordBatch::new_empty(self.schema.clone()),
        };
        if super::decode::has_infinity(&batch) {
            check_overflow(bytes)?;
        }
        Ok(batch)
    }
}

/// JSON has no infinity: one in a decoded float is either the string
/// `"Infinity"` (how sluice writes it) or a number too large for a 64-bit
/// float (`1e400`), which would be stored as infinity. The second is refused.
fn check_overflow(bytes: &[u8]) -> Result<(), String> {
    // `Value` parses every number (skipping it would not check its range).
    let values = serde_json::Deserializer::from_slice(bytes).into_iter::<serde_json::Value>();
    for v in values {
        if let Err(e) = v
            && e.to_string().contains("out of range")
        {
            return Err(
                "a number is too large for a 64-bit float and would become infinity; declare the field as \
                 text or decimal under [source.schema] to keep it exact"
                    .into(),
            );
        }
    }
    Ok(())
}

/// Writes non-finite floats, which JSON has no number for, as the strings
/// `"NaN"`, `"Infinity"` and `"-Infinity"` (read back as the same floats)
/// instead of `null`.
#[derive(Debug)]
pub(crate) struct NonFiniteAsText;

impl arrow::json::writer::EncoderFactory for NonFiniteAsText {
    fn make_default_encoder<'a>(
        &self,
        _field: &'a arrow::datatypes::FieldRef,
        array: &'a dyn arrow::array::Array,
        _options: &'a arrow::json::writer::EncoderOptions,
    ) -> Result<Option<arrow::json::writer::NullableEncoder<'a>>, arrow::error::ArrowError> {
        use arrow::array::AsArray;
        use arrow::datatypes::{Float32Type, Float64Type};
        let values: Vec<f64> = match array.data_type() {
            DataType::Float64 => array.as_primitive::<Float64Type>().values().to_vec(),
            DataType::Float32 => array
                .as_primitive::<Float32Type>()
                .values()
                .iter()
                .map(|&v| f64::from(v))
                .collect(),
            _ => return Ok(None),
        };
        if values.iter().all(|v| v.is_finite()) {
            return Ok(None);
        }
        let nulls = array.logical_nulls();
        Ok(Some(arrow::json::writer::NullableEncoder::new(
            Box::new(FloatText {
                values,
                f32: array.data_type() == &DataType::Float32,
            }),
            nulls,
        )))
    }
}

struct FloatText {
    values: Vec<f64>,
    f32: bool,
}

impl arrow::json::writer::Encoder for FloatText {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        use std::io::Write;
        let v = self.values[idx];
        let _ = match v {
            v if v.is_nan() => out.write_all(b"\"NaN\""),
            f64::INFINITY => out.write_all(b"\"Infinity\""),
            f64::NEG_INFINITY => out.write_all(b"\"-Infinity\""),
            // Shortest text that reads back as the same value.
            v if self.f32 => write!(out, "{:?}", v as f32),
            v => write!(out, "{v:?}"),
        };
    }
}

impl JsonDecoder {
    /// A decoder for `schema` whose errors say nothing about inference.
    pub(crate) fn new(schema: SchemaRef) -> Self {
        JsonDecoder {
            schema,
            inference: Inference::default(),
        }
    }

    /// Adds to a decoding error how the field's type was found.
    fn explain(&self, e: arrow::error::ArrowError) -> String {
        let m = explain(e);
        let field = m
            .strip_prefix("whilst decoding field '")
            .and_then(|rest| rest.split('\'').next());
        match field {
            Some(f) if self.inference.rows > 0 && self.schema.field_with_name(f).is_ok() => {
                format!("{m}{}", self.inference.hint(f))
            }
            _ => m,
        }
    }
}

fn explain(e: arrow::error::ArrowError) -> String {
    let m = e.to_string();
    let m = m
        .trim_start_matches("Json error: ")
        .trim_start_matches("Parser error: ");
    if let Some(pos) = m.find("column '").filter(|_| m.contains("missing from schema")) {
        let field = m[pos + 8..].split('\'').next().unwrap_or_default();
        return format!(
            "field `{field}` is not in the schema inferred from the first records; declare it under [source.schema] or raise infer_rows"
        );
    }
    m.to_string()
}

/// Infers a schema from the records in `sample` (at most `max_records`).
pub(crate) fn infer(sample: &[u8], kind: FrameKind, max_records: usize) -> Result<Schema, String> {
    let mut framer = Framer::new(kind, 0);
    framer.push(sample);
    let chunk = framer.take();
    let mut values = Vec::new();
    if let Some(chunk) = chunk {
        for i in 0..chunk.len().min(max_records) {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&chunk.data[chunk.span(i, i + 1)])
                && v.is_object()
            {
                values.push(v);
            }
        }
    }
    if values.is_empty() {
        // The whole sample may be one record without a terminator.
        let v: serde_json::Value =
            serde_json::from_slice(sample).map_err(|e| format!("no JSON object found in the first records: {e}"))?;
        match v {
            serde_json::Value::Array(items) => {
                values.extend(items.into_iter().filter(|v| v.is_object()).take(max_records))
            }
            v if v.is_object() => values.push(v),
            _ => return Err("expected JSON objects (one per line, or an array of objects)".into()),
        }
    }
    if values.is_empty() {
        return Err("no JSON object found in the first records".into());
    }
    let schema = infer_json_schema_from_iterator(values.into_iter().map(Ok)).map_err(|e| e.to_string())?;
    // Numbers as written: integers beyond 64 bits must not become floats.
    let mut shapes = HashMap::new();
    if let Some(chunk) = framer_chunk(sample, kind) {
        for i in 0..chunk.len().min(max_records) {
            number_shapes(&chunk.data[chunk.span(i, i + 1)], &mut shapes);
        }
    }
    let mut path = Vec::new();
    Ok(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| exact_field(f, &shapes, &mut path))
            .collect::<Vec<_>>(),
    ))
}

fn framer_chunk(sample: &[u8], kind: FrameKind) -> Option<super::framing::Chunk> {
    let mut framer = Framer::new(kind, 0);
    framer.push(sample);
    framer.take()
}

/// What the sampled literals of one numeric field looked like.
#[derive(Debug, Default, Clone, Copy)]
struct Shape {
    /// An integer literal outside the 64-bit range.
    big_int: bool,
    /// An exponent (`1e5`).
    exponent: bool,
    int_digits: usize,
    frac_digits: usize,
}

/// Field path (object keys from the top) → the shape of its number literals.
type Shapes = HashMap<Vec<String>, Shape>;

/// Records the literal shape of every number in one JSON record that sits
/// under objects only (numbers inside arrays keep the inferred type).
fn number_shapes(record: &[u8], shapes: &mut Shapes) {
    // Per open container: `Some(key)` for an object, `None` for an array.
    let mut stack: Vec<Option<String>> = Vec::new();
    let mut i = 0;
    while i < record.len() {
        match record[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < record.len() && record[i] != b'"' {
                    i += if record[i] == b'\\' { 2 } else { 1 };
                }
                let end = (i + 1).min(record.len());
                // A string right after `{` or `,` in an object is a key.
                let before = record[..start].iter().rev().find(|b| !b.is_ascii_whitespace());
                if let Some(Some(key)) = stack.last_mut()
                    && matches!(before, Some(b'{' | b','))
                {
                    *key = serde_json::from_slice::<String>(&record[start..end]).unwrap_or_default();
                }
            }
            b'{' => stack.push(Some(String::new())),
            b'[' => stack.push(None),
            b'}' | b']' => {
                stack.pop();
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i + 1 < record.len() && matches!(record[i + 1], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') {
                    i += 1;
                }
                let Some(path) = stack.iter().cloned().collect::<Option<Vec<String>>>() else {
                    i += 1;
                    continue;
                };
                let text = std::str::from_utf8(&record[start..=i]).unwrap_or_default();
                let shape = shapes.entry(path).or_default();
                let (mantissa, exp) = match text.find(['e', 'E']) {
                    Some(p) => (&text[..p], true),
                    None => (text, false),
                };
                let (int, frac) = mantissa
                    .trim_start_matches('-')
                    .split_once('.')
                    .unwrap_or((mantissa.trim_start_matches('-'), ""));
                shape.exponent |= exp;
                shape.int_digits = shape.int_digits.max(int.len());
                shape.frac_digits = shape.frac_digits.max(frac.len());
                shape.big_int |= !exp && frac.is_empty() && text.parse::<i64>().is_err();
            }
            _ => {}
        }
        i += 1;
    }
}

/// Largest precision of an Arrow decimal.
const MAX_DECIMAL_DIGITS: usize = 38;

/// A float column that held integers beyond 64 bits becomes a decimal wide
/// enough for the sampled literals (text when none is), so no digit is lost;
/// null-only fields become text. Walks into objects.
fn exact_field(f: &arrow::datatypes::FieldRef, shapes: &Shapes, path: &mut Vec<String>) -> arrow::datatypes::Field {
    path.push(f.name().clone());
    let t = match f.data_type() {
        DataType::Float64 => match shapes.get(path.as_slice()) {
            Some(s) if s.big_int && !s.exponent && s.int_digits + s.frac_digits <= MAX_DECIMAL_DIGITS => {
                DataType::Decimal128(MAX_DECIMAL_DIGITS as u8, s.frac_digits as i8)
            }
            Some(s) if s.big_int => DataType::Utf8,
            _ => DataType::Float64,
        },
        DataType::Struct(fields) => {
            DataType::Struct(fields.iter().map(|c| Arc::new(exact_field(c, shapes, path))).collect())
        }
        other => no_nulls(other),
    };
    path.pop();
    f.as_ref().clone().with_data_type(t)
}

/// A field null (or absent) in every sampled record is read as text, also
/// inside objects and lists, so values after the sample are kept.
fn no_nulls(t: &DataType) -> DataType {
    match t {
        DataType::Null => DataType::Utf8,
        DataType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|f| Arc::new(f.as_ref().clone().with_data_type(no_nulls(f.data_type()))))
                .collect(),
        ),
        DataType::List(item) => DataType::List(Arc::new(
            item.as_ref().clone().with_data_type(no_nulls(item.data_type())),
        )),
        other => other.clone(),
    }
}

/// Shared handle used by the source.
pub(crate) fn decoder(schema: SchemaRef, inference: Inference) -> Arc<dyn RecordDecoder> {
    Arc::new(JsonDecoder { schema, inference })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_is_an_error_naming_it() {
        let schema = Arc::new(infer(b"{\"a\":1}\n", FrameKind::Lines, 10).unwrap());
        let d = JsonDecoder {
            schema,
            inference: Inference::default(),
        };
        assert_eq!(d.decode(b"{\"a\":2}\n{\"a\":3}\n", 2).unwrap().num_rows(), 2);
        let err = d.decode(b"{\"a\":2,\"zz\":1}\n", 1).unwrap_err();
        assert!(err.contains("`zz`"), "{err}");
    }

    #[test]
    fn infers_nested_objects_from_an_array() {
        let s = infer(b"[{\"a\":1,\"m\":{\"x\":\"y\"}},{\"a\":2}]", FrameKind::JsonArray, 10).unwrap();
        assert_eq!(s.fields().len(), 2);
        assert!(matches!(
            s.field_with_name("m").unwrap().data_type(),
            arrow::datatypes::DataType::Struct(_)
        ));
    }
}
