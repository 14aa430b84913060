//! Configuration of the Elasticsearch/OpenSearch source and sink.

use serde::Deserialize;

/// How to reach a cluster: address, credentials, TLS. The source and the
/// sink configurations carry these keys themselves (see
/// [`search_config!`]); [`SearchSinkConfig::cluster`] and
/// [`SearchSourceConfig::cluster`] gather them.
#[derive(Debug, Clone, Default)]
pub struct ClusterConfig {
    pub url: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub api_key: Option<String>,
    pub bearer: Option<String>,
    pub ca_cert: Option<String>,
    pub insecure: bool,
    pub timeout_s: u64,
}

/// Declares a configuration struct with the cluster keys first, so one
/// `deny_unknown_fields` struct refuses a misspelt key of either kind.
macro_rules! search_config {
    ($(#[$meta:meta])* pub struct $name:ident { $($body:tt)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// `http://host:9200` or `https://…`; `user:password@` in the URL
            /// is basic auth.
            pub url: String,
            /// Basic auth user (or in the URL).
            #[serde(default)]
            pub user: Option<String>,
            /// Basic auth password.
            #[serde(default)]
            pub password: Option<String>,
            /// API key: the base64 `id:key` credential, or `id:key` itself.
            #[serde(default)]
            pub api_key: Option<String>,
            /// Bearer token (`Authorization: Bearer …`).
            #[serde(default)]
            pub bearer: Option<String>,
            /// PEM file of a certificate authority to trust (self-signed clusters).
            #[serde(default)]
            pub ca_cert: Option<String>,
            /// Skip certificate verification (test clusters only).
            #[serde(default)]
            pub insecure: bool,
            /// Seconds a request may take before it counts as failed. Default 120.
            #[serde(default = "default_timeout")]
            pub timeout_s: u64,
            $($body)*
        }

        impl $name {
            /// The keys that say how to reach the cluster.
            pub fn cluster(&self) -> ClusterConfig {
                ClusterConfig {
                    url: self.url.clone(),
                    user: self.user.clone(),
                    password: self.password.clone(),
                    api_key: self.api_key.clone(),
                    bearer: self.bearer.clone(),
                    ca_cert: self.ca_cert.clone(),
                    insecure: self.insecure,
                    timeout_s: self.timeout_s,
                }
            }
        }
    };
}

fn default_timeout() -> u64 {
    120
}

/// Concurrency of bulk requests: `"adaptive"` (default) or a fixed number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Concurrency {
    /// Found by additive increase and multiplicative decrease.
    #[default]
    Adaptive,
    /// Exactly this many requests in flight at most.
    Fixed(usize),
}

impl<'de> Deserialize<'de> for Concurrency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(i64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) if n >= 1 => Ok(Concurrency::Fixed(n as usize)),
            Raw::S(s) if s == "adaptive" => Ok(Concurrency::Adaptive),
            Raw::S(s) => match s.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(Concurrency::Fixed(n)),
                _ => Err(serde::de::Error::custom(format!(
                    "concurrency must be \"adaptive\" or a number of requests of at least 1, not `{s}`"
                ))),
            },
            Raw::N(n) => Err(serde::de::Error::custom(format!(
                "concurrency must be \"adaptive\" or a number of requests of at least 1, not {n}"
            ))),
        }
    }
}

/// The bulk action of a document when there is no `_op` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BulkOp {
    /// Create or replace.
    #[default]
    Index,
    /// Create; a document that exists is refused (version conflict).
    Create,
    /// Partial update of an existing document.
    Update,
    /// Partial update, creating the document when missing.
    Upsert,
    /// Delete by `_id`.
    Delete,
}

impl BulkOp {
    /// Parses an `_op` value (also CDC ops: `insert`, `u`, `d`…).
    pub fn parse(s: &str) -> Option<BulkOp> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "index" | "i" | "insert" | "c" | "r" => BulkOp::Index,
            "create" => BulkOp::Create,
            "update" | "u" => BulkOp::Update,
            "upsert" => BulkOp::Upsert,
            "delete" | "d" => BulkOp::Delete,
            _ => return None,
        })
    }
}

/// Whether the sink sets `refresh_interval = -1` and zero replicas while loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LoadTuning {
    /// Only on indexes this sink created.
    #[default]
    Auto,
    /// On every index written, restored at the end.
    Always,
    /// Never touch index settings.
    Never,
}

search_config! {
/// `[[sinks]] type = "elasticsearch"` (or `opensearch`).
pub struct SearchSinkConfig {
    /// Index name or template (`orders-{region}`); `{stream}` is the stream
    /// name. Default: the `_index` column when there is one, else `{stream}`.
    #[serde(default)]
    pub index: Option<String>,
    /// Document id: a column name or a template (`{tenant}:{id}`). Default:
    /// the `_id` column when there is one, else ids the cluster assigns.
    #[serde(default)]
    pub id: Option<String>,
    /// Routing: a column name or a template. Default: the `_routing` column.
    #[serde(default)]
    pub routing: Option<String>,
    /// Action when there is no `_op` column. Default `index`.
    #[serde(default)]
    pub op: BulkOp,
    /// Most documents in one `_bulk` request. Default 5000.
    #[serde(default = "default_bulk_docs")]
    pub bulk_docs: usize,
    /// Most bytes (uncompressed) in one `_bulk` request. Default 10 MiB.
    #[serde(default = "default_bulk_bytes")]
    pub bulk_bytes: usize,
    /// Gzip request bodies. Default: yes, unless the cluster is on this
    /// machine (a loopback address), where compressing only costs CPU.
    #[serde(default)]
    pub gzip: Option<bool>,
    /// `"adaptive"` (default) or a fixed number of requests in flight.
    #[serde(default)]
    pub concurrency: Concurrency,
    /// Upper bound of the adaptive concurrency. Default 32.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// Bytes of refused documents kept for retry before new writes wait.
    /// Default 64 MiB.
    #[serde(default = "default_retry_bytes")]
    pub max_retry_bytes: usize,
    /// Create missing indexes (with `mappings` and `settings`). Default true.
    #[serde(default = "crate::mode::default_true")]
    pub create: bool,
    /// Mappings of created indexes (JSON object, inline or from
    /// `mappings_file`). Default: the source index's, when copying from a
    /// search engine.
    #[serde(default)]
    pub mappings: Option<toml::Value>,
    /// A JSON file holding the mappings.
    #[serde(default)]
    pub mappings_file: Option<String>,
    /// Settings of created indexes (`number_of_shards`…).
    #[serde(default)]
    pub settings: Option<toml::Value>,
    /// `refresh_interval = -1` and zero replicas while loading. Default `auto`.
    #[serde(default)]
    pub load_tuning: LoadTuning,
    /// After a complete load, point this alias at the index (and away from
    /// every other index), atomically.
    #[serde(default)]
    pub alias: Option<String>,
    /// Give created indexes the source index's aliases (those not already
    /// naming an index of the target cluster). Default true.
    #[serde(default = "crate::mode::default_true")]
    pub copy_aliases: bool,
}
}

fn default_bulk_docs() -> usize {
    5000
}

fn default_bulk_bytes() -> usize {
    10 << 20
}

fn default_max_concurrency() -> usize {
    32
}

fn default_retry_bytes() -> usize {
    64 << 20
}

/// How the source pages through an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PageMode {
    /// Point in time with `search_after` when the cluster has it, else scroll.
    #[default]
    Auto,
    /// Point in time with `search_after`.
    Pit,
    /// The scroll API.
    Scroll,
}

search_config! {
/// `[source] type = "elasticsearch"` (or `opensearch`).
pub struct SearchSourceConfig {
    /// Index, alias or pattern to read, one stream.
    #[serde(default)]
    pub index: Option<String>,
    /// Several indexes, one stream each.
    #[serde(default)]
    pub indices: Vec<String>,
    /// Query filter (the `query` object of a search), as a TOML table or a
    /// JSON string. Default: every document.
    #[serde(default)]
    pub query: Option<toml::Value>,
    /// Stream name for a single index. Default: the index name.
    #[serde(default)]
    pub stream: Option<String>,
    /// Slices read in parallel. Default: one per 250,000 documents, at most 8.
    #[serde(default)]
    pub slices: Option<usize>,
    /// Documents per page. Default 1000.
    #[serde(default = "default_page_size")]
    pub page_size: usize,
    /// How long the cluster keeps the point in time or scroll between pages.
    /// Default `5m`.
    #[serde(default = "default_keep_alive")]
    pub keep_alive: String,
    /// `auto` (default), `pit` or `scroll`.
    #[serde(default)]
    pub paging: PageMode,
}
}

fn default_page_size() -> usize {
    1000
}

fn default_keep_alive() -> String {
    "5m".into()
}
