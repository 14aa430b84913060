//! The sluice data model and the contracts between its parts.
//!
//! What flows through a pipeline is a [`Batch`]: an Arrow `RecordBatch` plus
//! the engine metadata that makes delivery accountable — the stream it
//! belongs to, the source [`Position`] reached once it is delivered, and
//! where each row came from (so a rejected row can be named by file and
//! line). A [`Source`] pushes batches into a bounded channel, a chain of
//! [`Transform`]s reshapes them, and every [`Sink`] writes them and says when
//! they are durable. Rows refused one at a time travel apart from the data as
//! [`Rejection`]s.
//!
//! This crate does no I/O; connectors, transforms and the engine build on it.

mod batch;
pub mod changes;
pub mod dbmeta;
pub mod documents;
mod error;
pub mod payload;
pub mod registry;
mod rejection;
pub mod retry;
pub mod spatial;
mod traits;
pub mod types;

pub use batch::{Batch, BatchLimits, Position, row_json, row_record};
pub use changes::{CHANGES_PARTITION, ChangeFeed, ChangeSource, Changes, Prepared};
pub use error::{Error, ErrorKind, Result};
pub use payload::{Decoded, Payload, PayloadFormat};
pub use registry::{ConnectorInfo, Registry, SinkFactory, SourceFactory};
pub use rejection::{Rejection, Stage};
pub use retry::{Retrier, RetryPolicy};
pub use traits::{
    Applied, NotCopied, PartitionSpec, ReadContext, Sink, SinkConnector, Source, SourceEvent, StreamInfo, StreamSpec,
    Transform, TransformFactory, blocking,
};

/// Column names with a meaning to the engine and to document sinks.
pub mod reserved {
    /// Document or row identity.
    pub const ID: &str = "_id";
    /// Destination index for document sinks.
    pub const INDEX: &str = "_index";
    /// Routing key for document sinks.
    pub const ROUTING: &str = "_routing";
    /// Change operation: `insert`, `update`, `delete` or `upsert`.
    pub const OP: &str = "_op";
    /// Raw JSON bytes of a document, passed through unparsed.
    pub const SOURCE: &str = "_source";
    /// Every name above: document metadata, never part of a document body.
    pub const ALL: [&str; 5] = [INDEX, ID, ROUTING, OP, SOURCE];
}

/// Tables sluice keeps its own records in, inside destination databases
/// (checkpoints stored with the data, foreign keys waiting for their
/// tables). Database sources reading a whole schema leave them out.
pub const BOOKKEEPING_TABLES: [&str; 2] = ["_sluice_checkpoints", "_sluice_foreign_keys"];

/// The metadata fields Rally WSAPI exports carry on every object, at every
/// depth (dropped by the `rally` format and the `drop_fields` transform).
pub const RALLY_FIELDS: [&str; 6] = [
    "_rallyAPIMajor",
    "_rallyAPIMinor",
    "_ref",
    "_refObjectUUID",
    "_objectVersion",
    "_CreatedAt",
];
