//! [`Rejection`]: one row refused on its own, with the reason and where it came from.

use std::sync::Arc;

use serde::Serialize;

/// Which part of the pipeline refused the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// The source could not decode it (malformed CSV line, invalid JSON).
    Source,
    /// A transform refused it (failed cast, validation rule).
    Transform,
    /// The destination refused it (constraint, mapping error).
    Sink,
}

/// A row refused on its own. The run goes on or stops according to `on_error`.
#[derive(Debug, Clone, Serialize)]
pub struct Rejection {
    /// Stream of the row.
    pub stream: Arc<str>,
    /// Which part refused it.
    pub stage: Stage,
    /// Name of the source, transform or sink that refused it.
    pub by: Arc<str>,
    /// File or table the row came from.
    pub origin: Arc<str>,
    /// Input line (files) or record number, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// Why it was refused.
    pub reason: String,
    /// The original text, when the row never became a record (source rejections).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// The row as JSON text, when it was decoded before being refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<Box<serde_json::value::RawValue>>,
}

impl Rejection {
    /// One line naming the row and the reason, for logs and `on_error = "stop"`.
    pub fn describe(&self) -> String {
        let at = match self.line {
            Some(line) => format!("{}:{}", self.origin, line),
            None => self.origin.to_string(),
        };
        format!("{at}: row rejected by {}: {}", self.by, self.reason)
    }
}
