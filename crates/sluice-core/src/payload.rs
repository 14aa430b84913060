//! Rows handed from a source to a sink in the source's own encoding,
//! without decoding them into Arrow and encoding them again.
//!
//! A source that can do this says so per stream with
//! [`crate::Source::payload_format`]; a sink that can write that encoding as
//! it is says so with [`crate::Sink::accepts_payload`]. The engine asks only
//! when nothing needs the values on the way (no transforms, one sink) and,
//! when both agree, tells the source through [`crate::ReadContext::payload`]:
//! its batches then carry a [`Payload`] and no columns (only the row count
//! and the position, so counting and checkpoints work as for any batch).
//!
//! A payload can always be decoded ([`Payload::decode`]) into exactly the
//! rows the source would have sent, so a sink that must judge rows one at a
//! time (the destination refused some) decodes that batch and carries on.

use std::fmt;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;

use crate::{Rejection, Result};

/// An encoding of rows and the exact column types it carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PayloadFormat {
    /// Which encoding (`postgres/binary-copy`); only a sink that knows it
    /// can accept it.
    pub id: Arc<str>,
    /// The column types the values are encoded in, in column order, in the
    /// encoding's own terms: a sink accepts only when its destination
    /// columns are of exactly these types.
    pub fingerprint: Arc<str>,
}

/// The rows of one batch, encoded as the source read them.
pub trait Payload: Send + Sync + fmt::Debug {
    /// The encoding and column types.
    fn format(&self) -> &PayloadFormat;

    /// The encoded rows, in the format's own framing.
    fn bytes(&self) -> &[u8];

    /// The payload itself, for a sink of the same connector to reach what
    /// it knows beyond the bytes (a buffer it can share rather than copy).
    fn as_any(&self) -> &dyn std::any::Any;

    /// The rows as Arrow, exactly as the source would have sent them: rows
    /// holding a value that does not decode come back as rejections (and
    /// are not in `data`), as they would have come from the source.
    fn decode(&self) -> Result<Decoded>;
}

/// A payload decoded into Arrow.
#[derive(Debug)]
pub struct Decoded {
    /// The rows that decoded, in the stream's schema.
    pub data: RecordBatch,
    /// Rows that did not, with the reason.
    pub refused: Vec<Rejection>,
}
