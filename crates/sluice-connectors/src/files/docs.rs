//! Search-engine documents in files: elasticdump NDJSON, `_bulk` NDJSON,
//! Rally JSON exports and raw JSON documents.
//!
//! Every kind reads into the same columns a search source produces —
//! `_index`, `_id`, `_routing`, `_op` (bulk files only) and `_source`, the
//! document as JSON text — so a dump, a bulk file and an index are
//! interchangeable ends of a pipeline, and documents pass through without
//! being parsed into typed columns.

use std::borrow::Cow;
use std::io::Write;
use std::sync::Arc;

use arrow::array::{Array, RecordBatch, StringArray, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use sluice_core::RALLY_FIELDS;
pub(crate) use sluice_core::documents::{row_documents, text_column};

use super::decode::RecordDecoder;

/// Which document layout a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DocKind {
    /// `{"_index","_id","_source"}` per line (elasticdump).
    Dump,
    /// `_bulk` action lines, each followed by its document (none for deletes).
    Bulk,
    /// Rally objects; the six metadata fields are dropped at every depth
    /// and `ObjectID` becomes the id.
    Rally,
    /// Each record is a document as it is.
    Raw,
}

/// The columns documents are read into.
pub(crate) fn schema(kind: DocKind) -> Schema {
    let mut fields = vec![
        Field::new("_index", DataType::Utf8, true),
        Field::new("_id", DataType::Utf8, true),
        Field::new("_routing", DataType::Utf8, true),
    ];
    if kind == DocKind::Bulk {
        fields.push(Field::new("_op", DataType::Utf8, true));
    }
    fields.push(Field::new("_source", DataType::Utf8, true));
    Schema::new(fields)
}

/// Whether the first record of `sample` is an elasticdump line: an object
/// with `_id` and `_source`.
pub(crate) fn looks_like_dump(sample: &[u8]) -> bool {
    let start = sample.iter().position(|b| !b.is_ascii_whitespace() && *b != b'[');
    let Some(start) = start else { return false };
    let mut it = serde_json::Deserializer::from_slice(&sample[start..]).into_iter::<Value>();
    matches!(it.next(), Some(Ok(Value::Object(m))) if m.contains_key("_id") && m.contains_key("_source"))
}

/// Where a bulk record (action, then a document unless it deletes) ends:
/// whether `line` is an action that a document line follows.
pub(crate) fn bulk_action_wants_source(line: &[u8]) -> bool {
    let t = line.trim_ascii_start();
    let Some(rest) = t.strip_prefix(b"{") else {
        return false;
    };
    let rest = rest.trim_ascii_start();
    [&b"\"index\""[..], b"\"create\"", b"\"update\""]
        .iter()
        .any(|k| rest.starts_with(k))
}

#[derive(Deserialize)]
struct DumpLine<'a> {
    #[serde(rename = "_index", borrow, default)]
    index: Option<Cow<'a, str>>,
    #[serde(rename = "_id", default)]
    id: Option<IdValue<'a>>,
    #[serde(rename = "_routing", borrow, default)]
    routing: Option<Cow<'a, str>>,
    #[serde(rename = "_source", borrow)]
    source: &'a RawValue,
}

/// Ids are strings, but some exports write numbers.
#[derive(Deserialize)]
#[serde(untagged)]
enum IdValue<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Number(serde_json::Number),
}

impl IdValue<'_> {
    fn text(&self) -> String {
        match self {
            IdValue::Text(s) => s.to_string(),
            IdValue::Number(n) => n.to_string(),
        }
    }
}

#[derive(Deserialize)]
struct BulkMeta<'a> {
    #[serde(rename = "_index", borrow, default)]
    index: Option<Cow<'a, str>>,
    #[serde(rename = "_id", default)]
    id: Option<IdValue<'a>>,
    #[serde(alias = "_routing", borrow, default)]
    routing: Option<Cow<'a, str>>,
}

/// Decodes documents of one kind.
pub(crate) struct DocDecoder {
    kind: DocKind,
    schema: SchemaRef,
}

impl DocDecoder {
    pub fn new(kind: DocKind) -> Self {
        DocDecoder {
            kind,
            schema: Arc::new(schema(kind)),
        }
    }
}

#[derive(Default)]
struct Columns {
    index: StringBuilder,
    id: StringBuilder,
    routing: StringBuilder,
    op: StringBuilder,
    source: StringBuilder,
}

impl RecordDecoder for DocDecoder {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn decode(&self, bytes: &[u8], records: usize) -> Result<RecordBatch, String> {
        let mut c = Columns::default();
        let mut rows = 0;
        if self.kind == DocKind::Dump {
            // One pass: each line straight into its fields, `_source` kept as
            // the raw text it is (scanned once, not once as a value and again
            // as a line).
            for line in serde_json::Deserializer::from_slice(bytes).into_iter::<DumpLine<'_>>() {
                let line = line
                    .map_err(|e| format!("not an elasticdump line ({e}); each line holds _index, _id and _source"))?;
                c.index.append_option(line.index.as_deref());
                c.id.append_option(line.id.map(|i| i.text()));
                c.routing.append_option(line.routing.as_deref());
                c.source.append_value(line.source.get());
                rows += 1;
            }
        }
        let mut values = serde_json::Deserializer::from_slice(bytes).into_iter::<&RawValue>();
        while self.kind != DocKind::Dump
            && let Some(v) = values.next()
        {
            let v = v.map_err(|e| format!("invalid JSON: {e}"))?;
            match self.kind {
                // Decoded in one pass above.
                DocKind::Dump => break,
                DocKind::Raw => {
                    if !v.get().trim_start().starts_with('{') {
                        return Err("a document must be a JSON object".into());
                    }
                    c.index.append_null();
                    c.id.append_null();
                    c.routing.append_null();
                    c.source.append_value(v.get());
                }
                DocKind::Rally => {
                    let mut doc: Value = serde_json::from_str(v.get()).map_err(|e| format!("invalid JSON: {e}"))?;
                    if !doc.is_object() {
                        return Err("a Rally record must be a JSON object".into());
                    }
                    strip(&mut doc);
                    let id = match &doc["ObjectID"] {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    };
                    c.index.append_null();
                    c.id.append_option(id);
                    c.routing.append_null();
                    c.source.append_value(doc.to_string());
                }
                DocKind::Bulk => {
                    let action: std::collections::HashMap<&str, &RawValue> =
                        serde_json::from_str(v.get()).map_err(|e| format!("not a bulk action line ({e})"))?;
                    let (op, meta) = action
                        .into_iter()
                        .next()
                        .ok_or("empty bulk action line; expected {\"index\": {...}}")?;
                    let meta: BulkMeta<'_> =
                        serde_json::from_str(meta.get()).map_err(|e| format!("bad `{op}` action ({e})"))?;
                    let (op_name, source) = match op {
                        "delete" => ("delete", None),
                        "index" | "create" | "update" => {
                            let doc = values
                                .next()
                                .ok_or(format!("the `{op}` action has no document line after it"))?
                                .map_err(|e| format!("invalid JSON: {e}"))?;
                            if op == "update" {
                                #[derive(Deserialize)]
                                struct Update<'a> {
                                    #[serde(borrow)]
                                    doc: Option<&'a RawValue>,
                                    #[serde(default)]
                                    doc_as_upsert: bool,
                                }
                                let u: Update<'_> =
                                    serde_json::from_str(doc.get()).map_err(|e| format!("bad update body ({e})"))?;
                                let doc = u.doc.ok_or("update bodies need a `doc` (scripts are not supported)")?;
                                (if u.doc_as_upsert { "upsert" } else { "update" }, Some(doc.get()))
                            } else {
                                (op, Some(doc.get()))
                            }
                        }
                        other => return Err(format!("unknown bulk action `{other}`")),
                    };
                    c.index.append_option(meta.index.as_deref());
                    c.id.append_option(meta.id.map(|i| i.text()));
                    c.routing.append_option(meta.routing.as_deref());
                    c.op.append_value(op_name);
                    c.source.append_option(source);
                }
            }
            rows += 1;
        }
        if rows != records {
            return Err(format!("{rows} documents in {records} records"));
        }
        let mut cols: Vec<Arc<dyn Array>> = vec![
            Arc::new(c.index.finish()),
            Arc::new(c.id.finish()),
            Arc::new(c.routing.finish()),
        ];
        if self.kind == DocKind::Bulk {
            cols.push(Arc::new(c.op.finish()));
        }
        cols.push(Arc::new(c.source.finish()));
        RecordBatch::try_new(self.schema.clone(), cols).map_err(|e| e.to_string())
    }
}

/// Drops Rally's metadata fields at every depth.
fn strip(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for f in RALLY_FIELDS {
                m.remove(f);
            }
            m.values_mut().for_each(strip);
        }
        Value::Array(a) => a.iter_mut().for_each(strip),
        _ => {}
    }
}

/// A raw document that spans lines (pretty-printed JSON, as a cluster
/// returns `_source` the way it was indexed) re-serialized on one line, so
/// it cannot break the NDJSON framing; `None` when it is one line already.
pub(crate) fn one_line(doc: &str) -> std::result::Result<Option<Vec<u8>>, String> {
    if memchr::memchr2(b'\n', b'\r', doc.as_bytes()).is_none() {
        return Ok(None);
    }
    let value: Value = serde_json::from_str(doc).map_err(|e| format!("_source is not JSON: {e}"))?;
    serde_json::to_vec(&value)
        .map(Some)
        .map_err(|e| format!("_source cannot be written as JSON: {e}"))
}

fn text(a: Option<&StringArray>, i: usize) -> Option<&str> {
    a.filter(|a| a.is_valid(i)).map(|a| a.value(i))
}

/// Writes rows as documents of `kind` (dump, bulk or raw lines).
pub(crate) fn write_docs(out: &mut dyn Write, kind: DocKind, data: &RecordBatch) -> std::io::Result<()> {
    // Metadata columns as text whatever their type (a numeric `_id`, a
    // `_source` read as large strings).
    let col = |name: &str| -> std::io::Result<Option<StringArray>> {
        text_column(data, name).map_err(|e| std::io::Error::other(format!("column {name}: {e}")))
    };
    let (index, id, routing, op, source) = (
        col("_index")?,
        col("_id")?,
        col("_routing")?,
        col("_op")?,
        col("_source")?,
    );
    let (index, id, routing, op, source) = (
        index.as_ref(),
        id.as_ref(),
        routing.as_ref(),
        op.as_ref(),
        source.as_ref(),
    );
    let built = if source.is_none() {
        Some(row_documents(data).map_err(std::io::Error::other)?)
    } else {
        None
    };
    let mut line = Vec::with_capacity(256);
    let mut compacted: Vec<u8>;
    for i in 0..data.num_rows() {
        line.clear();
        let doc: Option<&[u8]> = match (&built, source) {
            (Some(b), _) => Some(&b[i]),
            (None, Some(s)) if s.is_valid(i) => {
                // Pretty-printed documents go on one line, or the file's framing breaks.
                match one_line(s.value(i)).map_err(|e| std::io::Error::other(format!("row {}: {e}", i + 1)))? {
                    Some(c) => {
                        compacted = c;
                        Some(compacted.as_slice())
                    }
                    None => Some(s.value(i).as_bytes()),
                }
            }
            _ => None,
        };
        let meta = |line: &mut Vec<u8>| -> std::io::Result<()> {
            let mut first = true;
            for (key, v) in [
                ("_index", text(index, i)),
                ("_id", text(id, i)),
                ("_routing", text(routing, i)),
            ] {
                if let Some(v) = v {
                    line.extend_from_slice(if first { b"\"" } else { b",\"" });
                    line.extend_from_slice(key.as_bytes());
                    line.extend_from_slice(b"\":");
                    serde_json::to_writer(&mut *line, v)?;
                    first = false;
                }
            }
            Ok(())
        };
        match kind {
            DocKind::Dump => {
                line.push(b'{');
                meta(&mut line)?;
                if line.len() > 1 {
                    line.push(b',');
                }
                line.extend_from_slice(b"\"_source\":");
                line.extend_from_slice(doc.unwrap_or(b"null"));
                line.extend_from_slice(b"}\n");
            }
            DocKind::Bulk => {
                let action = match text(op, i) {
                    Some("delete") => "delete",
                    Some("create") => "create",
                    Some("update") | Some("upsert") => "update",
                    _ => "index",
                };
                line.extend_from_slice(b"{\"");
                line.extend_from_slice(action.as_bytes());
                line.extend_from_slice(b"\":{");
                meta(&mut line)?;
                line.extend_from_slice(b"}}\n");
                if action != "delete" {
                    let doc = doc.unwrap_or(b"{}");
                    match text(op, i) {
                        Some("update") => {
                            line.extend_from_slice(b"{\"doc\":");
                            line.extend_from_slice(doc);
                            line.push(b'}');
                        }
                        Some("upsert") => {
                            line.extend_from_slice(b"{\"doc\":");
                            line.extend_from_slice(doc);
                            line.extend_from_slice(b",\"doc_as_upsert\":true}");
                        }
                        _ => line.extend_from_slice(doc),
                    }
                    line.push(b'\n');
                }
            }
            DocKind::Raw | DocKind::Rally => {
                let Some(doc) = doc else { continue };
                line.extend_from_slice(doc);
                line.push(b'\n');
            }
        }
        out.write_all(&line)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;

    fn decode(kind: DocKind, text: &str, n: usize) -> RecordBatch {
        DocDecoder::new(kind).decode(text.as_bytes(), n).unwrap()
    }

    fn col(b: &RecordBatch, name: &str, i: usize) -> Option<String> {
        let a = b.column_by_name(name).unwrap().as_string::<i32>();
        a.is_valid(i).then(|| a.value(i).to_string())
    }

    #[test]
    fn pretty_printed_sources_and_numeric_ids_are_written_on_one_line() {
        use arrow::array::{Int64Array, LargeStringArray};
        let schema = Arc::new(Schema::new(vec![
            Field::new("_id", DataType::Int64, false),
            Field::new("_source", DataType::LargeUtf8, true),
        ]));
        let data = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![7, 8])),
                Arc::new(LargeStringArray::from(vec![
                    "{\n  \"a\": 1,\r\n  \"b\": [2]\n}",
                    "{\"c\":3}",
                ])),
            ],
        )
        .unwrap();
        let mut out = Vec::new();
        write_docs(&mut out, DocKind::Dump, &data).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"_id\":\"7\",\"_source\":{\"a\":1,\"b\":[2]}}\n{\"_id\":\"8\",\"_source\":{\"c\":3}}\n"
        );
        assert!(one_line("{\n nope").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn dump_lines_keep_the_source_text() {
        let b = decode(
            DocKind::Dump,
            "{\"_index\":\"a\",\"_id\":\"1\",\"_source\":{\"x\": 1.50}}\n{\"_index\":\"a\",\"_id\":7,\"_source\":{}}\n",
            2,
        );
        assert_eq!(col(&b, "_source", 0).as_deref(), Some("{\"x\": 1.50}"));
        assert_eq!(col(&b, "_id", 1).as_deref(), Some("7"));
        assert!(looks_like_dump(b"{\"_index\":\"a\",\"_id\":\"1\",\"_source\":{}}\n"));
        assert!(!looks_like_dump(b"{\"id\":1}\n"));
    }

    #[test]
    fn bulk_pairs_become_rows_with_their_op() {
        let text = "{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"v\":1}\n{\"delete\":{\"_index\":\"a\",\"_id\":\"2\"}}\n{\"update\":{\"_id\":\"3\",\"routing\":\"r\"}}\n{\"doc\":{\"v\":3},\"doc_as_upsert\":true}\n";
        let b = decode(DocKind::Bulk, text, 3);
        assert_eq!(col(&b, "_op", 1).as_deref(), Some("delete"));
        assert_eq!(col(&b, "_source", 1), None);
        assert_eq!(col(&b, "_op", 2).as_deref(), Some("upsert"));
        assert_eq!(col(&b, "_source", 2).as_deref(), Some("{\"v\":3}"));
        assert_eq!(col(&b, "_routing", 2).as_deref(), Some("r"));
        assert!(bulk_action_wants_source(b"{ \"index\" : {}}"));
        assert!(!bulk_action_wants_source(b"{\"delete\":{}}"));
    }

    #[test]
    fn rally_metadata_is_dropped_at_every_depth() {
        let b = decode(
            DocKind::Rally,
            r#"{"ObjectID": 42, "_ref": "x", "_rallyAPIMajor": "2", "Name": "S", "Owner": {"_ref": "u", "_refObjectUUID": "v", "Name": "Ann", "_CreatedAt": "t", "_objectVersion": "1", "_rallyAPIMinor": "0"}}"#,
            1,
        );
        let doc: Value = serde_json::from_str(&col(&b, "_source", 0).unwrap()).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({"ObjectID": 42, "Name": "S", "Owner": {"Name": "Ann"}})
        );
        assert_eq!(col(&b, "_id", 0).as_deref(), Some("42"));
    }

    #[test]
    fn written_documents_read_back_the_same() {
        let text = "{\"_index\":\"a\",\"_id\":\"1\",\"_source\":{\"x\":[1,2]}}\n";
        let b = decode(DocKind::Dump, text, 1);
        for kind in [DocKind::Dump, DocKind::Bulk] {
            let mut out = Vec::new();
            write_docs(&mut out, kind, &b).unwrap();
            let back = decode(kind, std::str::from_utf8(&out).unwrap(), 1);
            assert_eq!(col(&back, "_source", 0), col(&b, "_source", 0), "{kind:?}");
            assert_eq!(col(&back, "_id", 0).as_deref(), Some("1"));
        }
    }
}
