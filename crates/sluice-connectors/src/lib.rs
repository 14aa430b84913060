//! sluice connectors, one folder per system, each behind a cargo feature.
//!
//! A connector folder holds its configuration (`config.rs`, deserialized
//! straight from the pipeline TOML) and its source and/or sink. The
//! [`registry`] is the one place that maps a `type = "…"` to a connector;
//! adding a connector touches its folder, one line there and one feature.

pub mod files;
pub mod ledger;
pub mod mode;
#[cfg(feature = "mysql")]
pub mod mysql;
pub mod null;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod refused;
pub mod registry;
#[cfg(feature = "search")]
pub mod search;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod url;

pub use registry::{SinkConfig, SourceConfig, build_sink, build_source, catalog, sink_as_source};
