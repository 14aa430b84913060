//! Elasticsearch and OpenSearch: a `_bulk` sink with adaptive concurrency
//! and a point-in-time (or scroll) source reading slices in parallel.
//!
//! Both speak plain HTTP with JSON; the differences between Elasticsearch
//! 7/8 and OpenSearch 2 (point-in-time endpoints above all) are settled by
//! asking the cluster what it is (`GET /`).

mod arc;
mod bulk;
mod client;
pub mod config;
mod sink;
mod source;

pub use config::{SearchSinkConfig, SearchSourceConfig};
pub use sink::{META_ALIASES, META_MAPPINGS, META_SETTINGS, SearchSink};
pub use source::SearchSource;

use arrow::array::RecordBatch;

/// The `_id` each row of `data` gets when `cfg` writes it for `stream`
/// (`None`: the cluster picks one), for comparing a source with its index.
pub fn document_ids(
    cfg: &SearchSinkConfig,
    stream: &str,
    data: &RecordBatch,
) -> sluice_core::Result<Vec<Option<String>>> {
    bulk::Encoder::new(cfg, data.schema(), stream)?.ids(data)
}

/// A TOML value (inline mappings, a query) as JSON.
pub(crate) fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(a) => J::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => J::Object(t.iter().map(|(k, v)| (k.clone(), toml_to_json(v))).collect()),
    }
}
