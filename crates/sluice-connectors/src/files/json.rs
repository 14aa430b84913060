//! JSON and NDJSON: schema inference from sampled records and decoding with
//! arrow-json in strict mode, so a field the schema does not know is a
//! rejection rather than silently dropped.

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::json::reader::infer_json_schema_from_iterator;
use arrow::record_batch::RecordBatch;

use super::decode::RecordDecoder;
use super::framing::{FrameKind, Framer};

/// Decodes whitespace-separated JSON objects against a fixed schema.
pub(crate) struct JsonDecoder {
    schema: SchemaRef,
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
            let n = d.decode(&bytes[off..]).map_err(explain)?;
            if n == 0 {
                break;
            }
            off += n;
        }
        match d.flush().map_err(explain)? {
            Some(b) => Ok(b),
            None => Ok(RecordBatch::new_empty(self.schema.clone())),
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
    infer_json_schema_from_iterator(values.into_iter().map(Ok)).map_err(|e| e.to_string())
}

/// Shared handle used by the source.
pub(crate) fn decoder(schema: SchemaRef) -> Arc<dyn RecordDecoder> {
    Arc::new(JsonDecoder { schema })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_is_an_error_naming_it() {
        let schema = Arc::new(infer(b"{\"a\":1}\n", FrameKind::Lines, 10).unwrap());
        let d = JsonDecoder { schema };
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
