//! Batches into `_bulk` NDJSON, and `_bulk` answers into what to retry and
//! what to refuse.
//!
//! Each row becomes one item: an action line (`index`, `create`, `update`,
//! `delete` with `_index`, `_id`, `routing`) and, except for deletes, a
//! document line. The document is the `_source` column passed through as it
//! is when there is one (dumps, search-to-search copies), else the row's
//! other columns as a JSON object.

use std::sync::Arc;

use arrow::array::{Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::Value;
use sluice_core::{Batch, Error, Rejection, Result, Stage, reserved};

use super::config::{BulkOp, SearchSinkConfig};
use crate::files::docs::{one_line, row_documents, text_column};

/// One document's part of a bulk body, kept until the server accepted it.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    /// Action line and document line, each ending in `\n`.
    pub bytes: Bytes,
    pub origin: Arc<str>,
    pub line: Option<u64>,
    pub attempts: u32,
}

/// A piece of a template: literal text or a field's value.
#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Field(String),
}

/// A value computed per row: a column as it is, or a template.
#[derive(Debug, Clone)]
enum Spec {
    Column(usize),
    Template(Vec<Part>),
}

/// How rows become bulk items, planned once per stream.
pub(crate) struct Encoder {
    index: Spec,
    /// The index name when no row changes it.
    fixed: Option<String>,
    id: Option<Spec>,
    routing: Option<Spec>,
    op: Option<usize>,
    default_op: BulkOp,
    source: Option<usize>,
    schema: Arc<Schema>,
    /// Whether a template reads fields out of the raw `_source`.
    fields_from_source: bool,
}

impl Encoder {
    /// Plans the encoding of `schema` for `stream`; a template naming a field
    /// that is neither a column nor (with a `_source` column) a document
    /// field is an error naming it.
    pub fn new(cfg: &SearchSinkConfig, schema: Arc<Schema>, stream: &str) -> Result<Encoder> {
        let col = |name: &str| schema.index_of(name).ok();
        let source = col(reserved::SOURCE);
        if let Some(i) = source
            && !matches!(schema.field(i).data_type(), DataType::Utf8 | DataType::LargeUtf8)
        {
            return Err(Error::config(
                "sinks.index",
                "the `_source` column must be JSON text (a string column)",
            ));
        }
        let plan = |key: &str, spec: Option<&String>, column: &str| -> Result<Option<Spec>> {
            match spec {
                None => Ok(col(column).map(Spec::Column)),
                Some(s) if !s.contains('{') && col(s).is_some() => Ok(col(s).map(Spec::Column)),
                Some(s) if !s.contains('{') && key != "index" => Err(Error::config(
                    format!("sinks.{key}"),
                    format!("`{s}` is not a column; name a column, or write a template such as \"{{tenant}}:{{id}}\""),
                )),
                Some(s) => Ok(Some(Spec::Template(parse_template(
                    key,
                    &s.replace("{stream}", stream),
                )?))),
            }
        };
        let index = match plan("index", cfg.index.as_ref(), reserved::INDEX)? {
            Some(v) => v,
            None => Spec::Template(vec![Part::Text(stream.to_string())]),
        };
        let id = plan("id", cfg.id.as_ref(), reserved::ID)?;
        let routing = plan("routing", cfg.routing.as_ref(), reserved::ROUTING)?;
        let mut fields_from_source = false;
        for v in [Some(&index), id.as_ref(), routing.as_ref()].into_iter().flatten() {
            if let Spec::Template(parts) = v {
                for p in parts {
                    if let Part::Field(f) = p
                        && col(f).is_none()
                    {
                        if source.is_none() {
                            return Err(Error::config(
                                "sinks",
                                format!(
                                    "template field `{f}` is not a column of stream {stream} (columns: {})",
                                    schema
                                        .fields()
                                        .iter()
                                        .map(|f| f.name().as_str())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            ));
                        }
                        fields_from_source = true;
                    }
                }
            }
        }
        let fixed = match &index {
            Spec::Template(parts) => parts
                .iter()
                .map(|p| match p {
                    Part::Text(t) => Some(t.as_str()),
                    Part::Field(_) => None,
                })
                .collect::<Option<String>>(),
            Spec::Column(_) => None,
        };
        Ok(Encoder {
            fixed,
            index,
            id,
            routing,
            op: col(reserved::OP),
            default_op: cfg.op,
            source,
            schema,
            fields_from_source,
        })
    }

    /// The index every row goes to, when it does not depend on the row.
    pub fn fixed_index(&self) -> Option<&str> {
        self.fixed.as_deref()
    }

    /// The `_source` column as text, when the rows have one.
    fn sources(&self, data: &RecordBatch) -> Result<Option<StringArray>> {
        match self.source {
            Some(_) => Ok(text_column(data, reserved::SOURCE)?),
            None => Ok(None),
        }
    }

    /// The id each row's document gets, as [`Encoder::encode`] computes it
    /// (`None`: the cluster picks one, or the row would be refused).
    pub fn ids(&self, data: &RecordBatch) -> Result<Vec<Option<String>>> {
        let Some(id) = &self.id else {
            return Ok(vec![None; data.num_rows()]);
        };
        let fmt = FormatOptions::default().with_null("");
        let formatters = formatters(data, &fmt);
        let sources = if self.fields_from_source {
            self.sources(data)?
        } else {
            None
        };
        Ok((0..data.num_rows())
            .map(|row| {
                let parsed = sources
                    .as_ref()
                    .filter(|s| s.is_valid(row))
                    .and_then(|s| serde_json::from_str::<Value>(s.value(row)).ok());
                let ctx = RowCtx {
                    data,
                    row,
                    formatters: &formatters,
                    parsed: parsed.as_ref(),
                };
                ctx.render(id, &self.schema).ok().flatten().filter(|s| !s.is_empty())
            })
            .collect())
    }

    /// Appends one item per row of `batch` to `out`, calling `cut` after
    /// each with the item's byte range and index name. Rows that cannot
    /// become an item (no id for a delete, a null template field) are
    /// returned as rejections.
    pub fn encode(
        &self,
        batch: &Batch,
        by: &Arc<str>,
        out: &mut BytesMut,
        mut cut: impl FnMut(std::ops::Range<usize>, &str, Option<u64>, &mut BytesMut),
    ) -> Result<Vec<Rejection>> {
        let data = &batch.data;
        let docs = self.documents(data)?;
        let fmt = FormatOptions::default().with_null("");
        let formatters = formatters(data, &fmt);
        let sources = self.sources(data)?;
        let ops = self.op.map(|i| data.column(i).clone());
        let mut refused = Vec::new();
        for row in 0..data.num_rows() {
            let source_doc: Option<&str> = match &sources {
                Some(s) if s.is_valid(row) => Some(s.value(row)),
                Some(_) => None,
                None => None,
            };
            let parsed = if self.fields_from_source {
                source_doc.and_then(|d| serde_json::from_str::<Value>(d).ok())
            } else {
                None
            };
            let ctx = RowCtx {
                data,
                row,
                formatters: &formatters,
                parsed: parsed.as_ref(),
            };
            let item = (|| -> std::result::Result<(String, Vec<u8>), String> {
                let op = match &ops {
                    Some(a) if a.is_valid(row) => {
                        let text = ctx.text_of(a.as_ref(), self.op.unwrap_or(0))?;
                        BulkOp::parse(&text)
                            .ok_or_else(|| format!("_op `{text}` is not index, create, update, upsert or delete"))?
                    }
                    _ => self.default_op,
                };
                let index = ctx
                    .render(&self.index, &self.schema)?
                    .filter(|s| !s.is_empty())
                    .ok_or("the index name is empty; set `index` or fill the _index column")?;
                // A null id column leaves the id to the cluster.
                let id = match &self.id {
                    Some(v) => ctx.render(v, &self.schema)?.filter(|s| !s.is_empty()),
                    None => None,
                };
                let routing = match &self.routing {
                    Some(v) => ctx.render(v, &self.schema)?.filter(|s| !s.is_empty()),
                    None => None,
                };
                if id.is_none() && matches!(op, BulkOp::Update | BulkOp::Upsert | BulkOp::Delete) {
                    return Err(
                        format!("a {op:?} needs a document id; set `id` or give the rows an _id column").to_lowercase(),
                    );
                }
                let mut text = Vec::with_capacity(128);
                let action = match op {
                    BulkOp::Index => "index",
                    BulkOp::Create => "create",
                    BulkOp::Update | BulkOp::Upsert => "update",
                    BulkOp::Delete => "delete",
                };
                text.extend_from_slice(b"{\"");
                text.extend_from_slice(action.as_bytes());
                text.extend_from_slice(b"\":{\"_index\":");
                push_json_str(&mut text, &index);
                if let Some(id) = &id {
                    text.extend_from_slice(b",\"_id\":");
                    push_json_str(&mut text, id);
                }
                if let Some(r) = &routing {
                    text.extend_from_slice(b",\"routing\":");
                    push_json_str(&mut text, r);
                }
                text.extend_from_slice(b"}}\n");
                if op != BulkOp::Delete {
                    let compacted;
                    let doc: &[u8] = match (&self.source, source_doc, &docs) {
                        (Some(_), Some(d), _) => match one_line(d)? {
                            Some(c) => {
                                compacted = c;
                                &compacted
                            }
                            None => d.as_bytes(),
                        },
                        (Some(_), None, _) => return Err("_source is null".into()),
                        (None, _, Some(lines)) => lines[row].as_slice(),
                        (None, _, None) => b"{}",
                    };
                    match op {
                        BulkOp::Update => {
                            text.extend_from_slice(b"{\"doc\":");
                            text.extend_from_slice(doc);
                            text.push(b'}');
                        }
                        BulkOp::Upsert => {
                            text.extend_from_slice(b"{\"doc\":");
                            text.extend_from_slice(doc);
                            text.extend_from_slice(b",\"doc_as_upsert\":true}");
                        }
                        _ => text.extend_from_slice(doc),
                    }
                    text.push(b'\n');
                }
                Ok((index, text))
            })();
            match item {
                Ok((index, text)) => {
                    let start = out.len();
                    out.extend_from_slice(&text);
                    cut(start..out.len(), &index, batch.line(row), out);
                }
                Err(reason) => refused.push(batch.reject_row(row, Stage::Sink, by, reason)),
            }
        }
        Ok(refused)
    }

    /// Each row's document columns as one JSON object per row, when there
    /// is no `_source` column.
    fn documents(&self, data: &RecordBatch) -> Result<Option<Vec<Vec<u8>>>> {
        if self.source.is_some() {
            return Ok(None);
        }
        Ok(Some(row_documents(data)?))
    }
}

/// A text formatter per column (`None` for a column that cannot be shown).
fn formatters<'a>(data: &'a RecordBatch, fmt: &'a FormatOptions<'a>) -> Vec<Option<ArrayFormatter<'a>>> {
    (0..data.num_columns())
        .map(|i| ArrayFormatter::try_new(data.column(i).as_ref(), fmt).ok())
        .collect()
}

struct RowCtx<'a> {
    data: &'a RecordBatch,
    row: usize,
    formatters: &'a [Option<ArrayFormatter<'a>>],
    parsed: Option<&'a Value>,
}

impl RowCtx<'_> {
    fn text_of(&self, array: &dyn Array, col: usize) -> std::result::Result<String, String> {
        if !array.is_valid(self.row) {
            return Err(format!("column `{}` is null", self.data.schema().field(col).name()));
        }
        match &self.formatters[col] {
            Some(f) => Ok(f.value(self.row).to_string()),
            None => Err(format!(
                "column `{}` cannot be shown as text",
                self.data.schema().field(col).name()
            )),
        }
    }

    /// The value for this row; `None` when a column used as it is is null
    /// (a null field inside a template is an error).
    fn render(&self, v: &Spec, schema: &Schema) -> std::result::Result<Option<String>, String> {
        match v {
            Spec::Column(i) if !self.data.column(*i).is_valid(self.row) => Ok(None),
            Spec::Column(i) => self.text_of(self.data.column(*i).as_ref(), *i).map(Some),
            Spec::Template(parts) => {
                let mut out = String::new();
                for p in parts {
                    match p {
                        Part::Text(t) => out.push_str(t),
                        Part::Field(f) => match schema.index_of(f) {
                            Ok(i) => out.push_str(&self.text_of(self.data.column(i).as_ref(), i)?),
                            Err(_) => match self.parsed.and_then(|d| d.get(f)) {
                                Some(Value::String(s)) => out.push_str(s),
                                Some(Value::Null) | None => {
                                    return Err(format!("template field `{f}` is missing or null"));
                                }
                                Some(other) => out.push_str(&other.to_string()),
                            },
                        },
                    }
                }
                Ok(Some(out))
            }
        }
    }
}

fn parse_template(key: &str, s: &str) -> Result<Vec<Part>> {
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Text(rest[..open].to_string()));
        }
        let Some(close) = rest[open..].find('}') else {
            return Err(Error::config(
                format!("sinks.{key}"),
                format!("template `{s}` opens a {{ that is never closed"),
            ));
        };
        let name = rest[open + 1..open + close].trim();
        if name.is_empty() {
            return Err(Error::config(
                format!("sinks.{key}"),
                format!("template `{s}` has an empty {{}}; name a field inside"),
            ));
        }
        parts.push(Part::Field(name.to_string()));
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_string()));
    }
    Ok(parts)
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes exactly as JSON needs; writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// What the server said about one item.
#[derive(Debug)]
pub(crate) enum Verdict {
    Done,
    /// Try again later; `true` when it was back-pressure.
    Retry(bool),
    /// Refused for good, with the server's reason.
    Refused(String),
}

#[derive(Deserialize)]
struct BulkReply {
    #[serde(default)]
    errors: bool,
    #[serde(default)]
    items: Vec<std::collections::HashMap<String, ItemReply>>,
}

#[derive(Deserialize)]
struct ItemReply {
    #[serde(default)]
    status: u16,
    #[serde(default)]
    error: Option<Value>,
}

/// Reads a `_bulk` answer: one verdict per item sent, in order.
pub(crate) fn verdicts(body: &[u8], sent: usize) -> std::result::Result<Vec<Verdict>, String> {
    #[derive(Deserialize)]
    struct Quick {
        #[serde(default)]
        errors: bool,
    }
    let quick: Quick = serde_json::from_slice(body).map_err(|e| format!("the _bulk answer is not JSON: {e}"))?;
    if !quick.errors {
        return Ok((0..sent).map(|_| Verdict::Done).collect());
    }
    let reply: BulkReply = serde_json::from_slice(body).map_err(|e| format!("unexpected _bulk answer: {e}"))?;
    let _ = reply.errors;
    if reply.items.len() != sent {
        return Err(format!(
            "the _bulk answer has {} items for {sent} sent",
            reply.items.len()
        ));
    }
    Ok(reply
        .items
        .into_iter()
        .map(|m| {
            let Some(item) = m.into_values().next() else {
                return Verdict::Refused("empty item in the _bulk answer".into());
            };
            classify(item.status, item.error.as_ref())
        })
        .collect())
}

fn classify(status: u16, error: Option<&Value>) -> Verdict {
    let Some(err) = error else {
        // Success, or a delete of a missing document (404 `not_found`).
        return Verdict::Done;
    };
    let kind = err["type"].as_str().unwrap_or("");
    if status == 429 || kind == "es_rejected_execution_exception" || kind == "circuit_breaking_exception" {
        return Verdict::Retry(true);
    }
    if status == 503 {
        return Verdict::Retry(true);
    }
    if status >= 500 || status == 408 {
        return Verdict::Retry(false);
    }
    let reason = err["reason"].as_str().unwrap_or("");
    let caused = err["caused_by"]["reason"]
        .as_str()
        .map(|c| format!(" ({c})"))
        .unwrap_or_default();
    Verdict::Refused(format!("HTTP {status} {kind}: {reason}{caused}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::Field;

    fn cfg(toml_text: &str) -> SearchSinkConfig {
        toml::from_str(&format!("url = \"http://h:9200\"\n{toml_text}")).unwrap()
    }

    fn batch() -> Batch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("tenant", DataType::Utf8, false),
            Field::new("id", DataType::Int64, false),
            Field::new("note", DataType::Utf8, true),
        ]));
        let data = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["acme", "zen"])),
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a \"q\""), None])),
            ],
        )
        .unwrap();
        Batch::new("orders".into(), "orders.csv".into(), data)
    }

    fn encode(c: &SearchSinkConfig, b: &Batch) -> (Vec<String>, Vec<Rejection>) {
        let enc = Encoder::new(c, b.data.schema(), "orders").unwrap();
        let mut out = BytesMut::new();
        let mut items = Vec::new();
        let refused = enc
            .encode(b, &"elasticsearch".into(), &mut out, |r, _, _, buf| {
                items.push(String::from_utf8(buf[r].to_vec()).unwrap())
            })
            .unwrap();
        (items, refused)
    }

    #[test]
    fn templates_build_index_id_and_routing_from_columns() {
        let c = cfg("index = \"orders-{tenant}\"\nid = \"{tenant}:{id}\"\nrouting = \"tenant\"");
        let (items, refused) = encode(&c, &batch());
        assert!(refused.is_empty());
        assert_eq!(
            items[0],
            "{\"index\":{\"_index\":\"orders-acme\",\"_id\":\"acme:1\",\"routing\":\"acme\"}}\n{\"tenant\":\"acme\",\"id\":1,\"note\":\"a \\\"q\\\"\"}\n"
        );
        assert!(items[1].starts_with("{\"index\":{\"_index\":\"orders-zen\",\"_id\":\"zen:2\""));
    }

    #[test]
    fn deletes_without_an_id_are_refused_and_upserts_wrap_the_document() {
        let (_, refused) = encode(&cfg("op = \"delete\""), &batch());
        assert_eq!(refused.len(), 2);
        assert!(
            refused[0].reason.contains("needs a document id"),
            "{}",
            refused[0].reason
        );
        let (items, _) = encode(&cfg("op = \"upsert\"\nid = \"id\""), &batch());
        assert!(items[0].contains("\"doc_as_upsert\":true"), "{}", items[0]);
        assert!(items[0].starts_with("{\"update\":"));
    }

    #[test]
    fn unknown_template_fields_are_configuration_errors() {
        let b = batch();
        let err = Encoder::new(&cfg("id = \"{nope}\""), b.data.schema(), "orders")
            .err()
            .unwrap();
        assert!(err.to_string().contains("`nope`"), "{err}");
    }

    #[test]
    fn bulk_answers_split_into_done_retry_and_refused() {
        let body = br#"{"took":1,"errors":true,"items":[
            {"index":{"_id":"1","status":201,"result":"created"}},
            {"index":{"_id":"2","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"create":{"_id":"3","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[3]: version conflict"}}},
            {"delete":{"_id":"4","status":404,"result":"not_found"}},
            {"index":{"_id":"5","status":503,"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}}}]}"#;
        let v = verdicts(body, 5).unwrap();
        assert!(matches!(v[0], Verdict::Done));
        assert!(matches!(v[1], Verdict::Retry(true)));
        assert!(matches!(&v[2], Verdict::Refused(r) if r.contains("version_conflict")));
        assert!(matches!(v[3], Verdict::Done));
        assert!(matches!(v[4], Verdict::Retry(true)));
        assert!(verdicts(br#"{"errors":true,"items":[]}"#, 2).is_err());
    }
}
