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

/// Registers the Elasticsearch/OpenSearch source and sink (`elasticsearch`, also `es`, `opensearch`).
pub fn register(r: &mut sluice_core::Registry) {
    use sluice_core::{ConnectorInfo, SinkConnector, Source};
    r.add_source(
        ConnectorInfo::new("elasticsearch", "indexes read by point in time + search_after (scroll fallback) in parallel slices")
            .aliases(&["es", "opensearch"])
            .options(SOURCE_OPTIONS),
        |c: SearchSourceConfig, kind| Ok(Box::new(SearchSource::new(c, flavor(kind))?) as Box<dyn Source>),
    );
    r.add_sink(
        ConnectorInfo::new("elasticsearch", "_bulk with adaptive concurrency, item retries, dead letters")
            .aliases(&["es", "opensearch"])
            .options(SINK_OPTIONS),
        |c: SearchSinkConfig, kind| Ok(Box::new(SearchSink::new(c, flavor(kind))?) as Box<dyn SinkConnector>),
    );
}

const SOURCE_OPTIONS: &[(&str, &str)] = &[
                ("url", "http://host:9200 (https:// for TLS; user:password@ for basic auth)"),
                ("user / password / api_key / bearer", "credentials"),
                ("ca_cert / insecure", "PEM file of a CA to trust / skip certificate checks"),
                ("index / indices", "index, alias or pattern to read, one stream each"),
                ("query", "query filter: a TOML table or JSON text of the search `query`"),
                ("slices", "parallel slices (default 1 per 250k documents, at most 8)"),
                ("page_size", "documents per page (default 1000)"),
                ("keep_alive", "point in time / scroll keep-alive (default 5m)"),
                ("paging", "auto | pit | scroll (default auto)"),
            ];

const SINK_OPTIONS: &[(&str, &str)] = &[
                (
                    "url",
                    "http://host:9200 (https:// for TLS; user:password@ for basic auth)",
                ),
                ("user / password / api_key / bearer", "credentials"),
                (
                    "ca_cert / insecure",
                    "PEM file of a CA to trust / skip certificate checks",
                ),
                (
                    "index",
                    "index name or template, e.g. orders-{region} (default: _index column, else {stream})",
                ),
                (
                    "id",
                    "id column or template, e.g. {tenant}:{id} (default: _id column, else auto)",
                ),
                ("routing", "routing column or template (default: _routing column)"),
                (
                    "op",
                    "index | create | update | upsert | delete when there is no _op column (default index)",
                ),
                ("bulk_docs / bulk_bytes", "request caps (default 5000 docs, 10 MiB)"),
                (
                    "gzip",
                    "compress request bodies (default true, false for a cluster on loopback)",
                ),
                (
                    "concurrency",
                    "\"adaptive\" or a fixed number of requests (default adaptive)",
                ),
                ("max_concurrency", "upper bound of the adaptive limit (default 32)"),
                (
                    "max_retry_bytes",
                    "memory for documents awaiting a retry (default 64 MiB)",
                ),
                (
                    "create / mappings / mappings_file / settings",
                    "index creation, mappings first (default: the source index's)",
                ),
                (
                    "load_tuning",
                    "auto | always | never: refresh off, 0 replicas while loading (default auto: created indexes)",
                ),
                ("alias", "after a complete load, point this alias at the index"),
                (
                    "copy_aliases",
                    "give created indexes the source index's aliases (default true)",
                ),
            ];

/// Which flavour a `type` names: `opensearch`, or else Elasticsearch.
fn flavor(kind: &str) -> &'static str {
    if kind.eq_ignore_ascii_case("opensearch") { "opensearch" } else { "elasticsearch" }
}
