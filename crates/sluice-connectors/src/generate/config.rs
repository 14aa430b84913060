//! `[source] type = "generate"`.

use serde::Deserialize;

/// How many rows to make, in which streams.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerateConfig {
    /// Rows per stream.
    pub rows: u64,
    /// Stream names; each gets `rows` rows.
    pub streams: Vec<String>,
    /// Partitions per stream (contiguous ranges of row numbers).
    pub partitions: u64,
    /// Length of the text in the `name` column.
    pub text_bytes: usize,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        GenerateConfig {
            rows: 1000,
            streams: vec!["generated".into()],
            partitions: 1,
            text_bytes: 16,
        }
    }
}
