//! How database sinks name what they create: `identifiers = "preserve"`
//! (default), `"lower"` or `"snake"`.
//!
//! A source's names are kept as they are by default: `InvoiceLine.InvoiceId`
//! from MySQL becomes `"InvoiceLine"."InvoiceId"` in PostgreSQL, faithful
//! but quoted in every query. `lower` and `snake` rename the table, its
//! columns, its key, index and foreign-key columns and the tables foreign
//! keys point at, all by one rule, so a whole database renamed this way
//! still fits together. Two names that become one (`Id` and `id` under
//! `lower`) are refused before anything is written.
//!
//! The renaming wraps the sink connector ([`Identifiers::wrap`]): the
//! database sink sees renamed streams and batches and knows nothing of it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use serde::Deserialize;
use sluice_core::dbmeta::TableMeta;
use sluice_core::{Batch, Error, Position, Rejection, Result, Sink, SinkConnector, Source, StreamInfo};

/// The naming rule of a database sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Identifiers {
    /// Names as the source has them (quoted where the database needs it).
    #[default]
    Preserve,
    /// Lowercased: `InvoiceLine` → `invoiceline`.
    Lower,
    /// Lowercased words joined by `_`: `InvoiceLine` → `invoice_line`,
    /// `customerID` → `customer_id`, `Unit Price` → `unit_price`.
    Snake,
}

impl Identifiers {
    /// `name` under this rule.
    pub fn apply(self, name: &str) -> String {
        match self {
            Identifiers::Preserve => name.to_string(),
            Identifiers::Lower => name.to_lowercase(),
            Identifiers::Snake => snake(name),
        }
    }

    /// The sink, renaming by this rule (itself when the rule is `preserve`).
    pub fn wrap(self, inner: Box<dyn SinkConnector>) -> Box<dyn SinkConnector> {
        match self {
            Identifiers::Preserve => inner,
            rule => Box::new(Renamed {
                inner,
                rule,
                tables: Mutex::new(HashMap::new()),
            }),
        }
    }
}

/// `snake_case` of a name: words split at spaces, punctuation, a lower-case
/// letter or digit followed by a capital, and the last capital of an
/// acronym followed by a lower-case letter (`HTTPServer` → `http_server`).
fn snake(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
            continue;
        }
        if c.is_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let boundary = prev.is_lowercase() || prev.is_ascii_digit() || (prev.is_uppercase() && next_lower);
            if boundary && !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
        }
        out.extend(c.to_lowercase());
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.is_empty() { name.to_string() } else { out }
}

/// The name of a key, index or constraint sluice creates
/// (`orders_customer_id_fkey`), cut to `max_bytes` (63 in PostgreSQL, 64
/// in MySQL) at a character boundary.
pub(crate) fn object_name(table: &str, columns: &[String], suffix: &str, max_bytes: usize) -> String {
    let mut name = format!("{table}_{}_{suffix}", columns.join("_"));
    let mut end = name.len().min(max_bytes);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.truncate(end);
    name
}

/// A sink connector whose streams, tables and columns are renamed.
struct Renamed {
    inner: Box<dyn SinkConnector>,
    rule: Identifiers,
    /// Renamed stream name → the stream it came from, to refuse two
    /// streams that would share a table.
    tables: Mutex<HashMap<String, String>>,
}

impl Renamed {
    fn key(&self) -> &'static str {
        "sinks.identifiers"
    }

    /// The stream name the inner sink sees, refusing one another stream
    /// already took.
    fn stream_name(&self, stream: &str) -> Result<String> {
        let renamed = self.rule.apply(stream);
        let mut tables = self
            .tables
            .lock()
            .map_err(|_| Error::Internal("identifier map poisoned".into()))?;
        match tables.get(&renamed) {
            Some(other) if other != stream => Err(Error::config(
                self.key(),
                format!(
                    "streams `{other}` and `{stream}` would both be written to table `{renamed}`; \
                     set identifiers = \"preserve\" or give one a table of its own"
                ),
            )),
            _ => {
                tables.insert(renamed.clone(), stream.to_string());
                Ok(renamed)
            }
        }
    }

    /// The schema with every name renamed, refusing columns that collide.
    fn schema(&self, stream: &str, schema: &SchemaRef) -> Result<SchemaRef> {
        let mut seen: HashMap<String, &str> = HashMap::new();
        let mut fields = Vec::with_capacity(schema.fields().len());
        for f in schema.fields() {
            let name = self.rule.apply(f.name());
            if let Some(other) = seen.insert(name.clone(), f.name()) {
                return Err(Error::config(
                    self.key(),
                    format!(
                        "columns `{other}` and `{}` of stream `{stream}` would both become `{name}`; \
                         rename one (a `rename` transform) or set identifiers = \"preserve\"",
                        f.name()
                    ),
                ));
            }
            fields.push(Field::clone(f).with_name(name));
        }
        let mut metadata = schema.metadata().clone();
        if let Some(meta) = TableMeta::of(schema) {
            metadata.extend(self.table_meta(meta).to_metadata());
        }
        Ok(Arc::new(Schema::new(fields).with_metadata(metadata)))
    }

    fn table_meta(&self, mut m: TableMeta) -> TableMeta {
        let r = |v: &mut String| *v = self.rule.apply(v);
        let all = |v: &mut Vec<String>| v.iter_mut().for_each(r);
        r(&mut m.table);
        all(&mut m.primary_key);
        all(&mut m.serial_columns);
        for ix in &mut m.indexes {
            r(&mut ix.name);
            all(&mut ix.columns);
        }
        for fk in &mut m.foreign_keys {
            r(&mut fk.name);
            all(&mut fk.columns);
            r(&mut fk.ref_table);
            all(&mut fk.ref_columns);
        }
        m
    }

    fn info(&self, stream: &StreamInfo) -> Result<StreamInfo> {
        let mut s = stream.clone();
        s.name = self.stream_name(&stream.name)?.into();
        s.schema = self.schema(&stream.name, &stream.schema)?;
        Ok(s)
    }
}

#[async_trait]
impl SinkConnector for Renamed {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn target(&self, stream: &str) -> String {
        self.inner.target(&self.rule.apply(stream))
    }

    async fn open(&self, stream: &StreamInfo) -> Result<Box<dyn Sink>> {
        let info = self.info(stream)?;
        let inner = self.inner.open(&info).await?;
        Ok(Box::new(RenamedSink {
            inner,
            stream: info.name,
            schema: info.schema,
        }))
    }

    async fn plan(&self, stream: &StreamInfo) -> Result<Vec<String>> {
        self.inner.plan(&self.info(stream)?).await
    }

    async fn check(&self, streams: &[StreamInfo]) -> Result<Vec<String>> {
        let renamed = streams.iter().map(|s| self.info(s)).collect::<Result<Vec<_>>>()?;
        self.inner.check(&renamed).await
    }

    fn resources(&self) -> Vec<String> {
        self.inner.resources()
    }

    fn read_back(&self, stream: &str) -> Option<Result<Box<dyn Source>>> {
        self.inner.read_back(&self.rule.apply(stream))
    }

    fn destination_column(&self, stream: &str, column: &str) -> String {
        let _ = stream;
        self.rule.apply(column)
    }

    fn holds_documents(&self) -> bool {
        self.inner.holds_documents()
    }

    fn document_ids(&self, stream: &str, data: &RecordBatch) -> Option<Result<Vec<Option<String>>>> {
        self.inner.document_ids(&self.rule.apply(stream), data)
    }
}

/// One stream's sink, handed batches under the renamed schema. It accepts
/// no undecoded payload (`Sink::accepts_payload` keeps its default), so a
/// renamed stream always arrives as Arrow rows.
struct RenamedSink {
    inner: Box<dyn Sink>,
    stream: Arc<str>,
    schema: SchemaRef,
}

#[async_trait]
impl Sink for RenamedSink {
    async fn write(&mut self, batch: &Batch) -> Result<Vec<Rejection>> {
        let mut renamed = batch.clone();
        renamed.stream = self.stream.clone();
        // The same arrays under the renamed fields; a batch whose columns
        // differ from the opened schema is the inner sink's to refuse.
        if batch.data.num_columns() == self.schema.fields().len() {
            renamed.data = RecordBatch::try_new(self.schema.clone(), batch.data.columns().to_vec())?;
        }
        self.inner.write(&renamed).await
    }

    async fn flush(&mut self) -> Result<()> {
        self.inner.flush().await
    }

    async fn committed(&mut self) -> Result<Option<Vec<Position>>> {
        self.inner.committed().await
    }

    fn already_complete(&self) -> bool {
        self.inner.already_complete()
    }

    fn pipeline_depth(&self) -> usize {
        self.inner.pipeline_depth()
    }

    fn batches_per_flush(&self) -> usize {
        self.inner.batches_per_flush()
    }

    fn take_refused(&mut self) -> Vec<Rejection> {
        self.inner.take_refused()
    }

    fn durable_on_flush(&self) -> bool {
        self.inner.durable_on_flush()
    }

    async fn finish(&mut self, complete: bool) -> Result<()> {
        self.inner.finish(complete).await
    }

    async fn fail(&mut self) -> Result<()> {
        self.inner.fail().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_splits_words_the_way_people_read_them() {
        for (from, to) in [
            ("InvoiceLine", "invoice_line"),
            ("InvoiceId", "invoice_id"),
            ("customerID", "customer_id"),
            ("HTTPServer", "http_server"),
            ("already_snake", "already_snake"),
            ("Unit Price", "unit_price"),
            ("address2", "address2"),
            ("Address2Line", "address2_line"),
            ("last-update", "last_update"),
            ("_private", "private"),
            ("Ünïcode", "ünïcode"),
            ("ID", "id"),
        ] {
            assert_eq!(Identifiers::Snake.apply(from), to, "{from}");
        }
        assert_eq!(Identifiers::Lower.apply("InvoiceLine"), "invoiceline");
        assert_eq!(Identifiers::Preserve.apply("InvoiceLine"), "InvoiceLine");
    }

    #[test]
    fn columns_that_collide_are_refused_naming_both() {
        let sink = Renamed {
            inner: Box::new(crate::null::NullSink),
            rule: Identifiers::Lower,
            tables: Mutex::new(HashMap::new()),
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("Id", arrow::datatypes::DataType::Int32, false),
            Field::new("id", arrow::datatypes::DataType::Int32, false),
        ]));
        let err = sink.schema("t", &schema).unwrap_err().to_string();
        assert!(err.contains("`Id` and `id`") && err.contains("identifiers"), "{err}");
        assert!(sink.stream_name("Track").is_ok());
        let err = sink.stream_name("TRACK").unwrap_err().to_string();
        assert!(err.contains("`Track` and `TRACK`"), "{err}");
    }
}
