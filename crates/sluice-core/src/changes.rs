//! Change capture: a [`ChangeSource`] reads the row changes of several
//! tables in commit order (a database's log), and a [`ChangeFeed`] hands
//! them over as batches with the `_op` column ([`crate::reserved::OP`]).
//!
//! # Contract
//!
//! - A feed sends whole transactions in commit order, cut into batches of
//!   one stream each, in the order the changes were made; a transaction
//!   larger than one batch comes in several, and only the last of them
//!   carries a position [`ChangeFeed::confirm`] may release the source's
//!   log up to.
//! - Every batch's position is that of its last change, comparable only
//!   by the source. A sink stores it with the rows
//!   ([`crate::Sink::committed`]); at [`ChangeSource::start`] the engine
//!   hands the stored positions back, and the feed leaves out every change
//!   at or before a stream's position, so a change is applied once however
//!   often the feed is restarted.
//! - [`ChangeFeed::confirm`] is called only once every sink has made every
//!   change up to the position durable; the source may then forget them.
//!   Positions confirmed never go backwards.

use std::collections::HashMap;

use async_trait::async_trait;

use crate::{Batch, BatchLimits, Position, Result, StreamSpec};

/// The name of the partition every change position belongs to.
pub const CHANGES_PARTITION: &str = "~changes";

/// What [`ChangeSource::prepare`] found or created.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    /// The tables captured, each with the schema of its change batches
    /// (the table's columns, then `_op` and whatever else the source adds),
    /// which the sinks are opened for.
    pub streams: Vec<crate::StreamSpec>,
    /// The capture started now (its slot was created): a snapshot of the
    /// tables consistent with where the changes start, as a name the
    /// backfill source can read at, while the feed is not started. `None`
    /// when capture was already going on.
    pub snapshot: Option<String>,
    /// The capture started now and nothing before it will ever be read as
    /// changes: every stream must be copied before changes are applied.
    pub created: bool,
    /// One line per thing set up or found (`publication … created`).
    pub notes: Vec<String>,
}

/// What a feed has for the engine.
#[derive(Debug)]
pub enum Changes {
    /// Changes, one stream per batch, in the order they must be applied.
    Batches(Vec<Batch>),
    /// Nothing new: every change up to `position` has been sent, so once
    /// the batches before it are durable it may be confirmed.
    Idle(Position),
}

/// Reads the changes of a set of tables.
#[async_trait]
pub trait ChangeSource: Send + Sync {
    /// Short name for logs (`postgres`).
    fn name(&self) -> &str;

    /// Creates what capture needs and is missing (a publication; a slot
    /// when `create`, else a missing slot is an error: changes were made
    /// that nothing captured) and describes the tables. Reads no change yet.
    async fn prepare(&self, create: bool) -> Result<Prepared>;

    /// Starts reading changes after what the slot confirmed, leaving out
    /// the changes of each stream at or before its position in `applied`.
    async fn start(&self, applied: HashMap<String, Position>) -> Result<Box<dyn ChangeFeed>>;

    /// Forgets the capture (drops the slot), so the next run copies every
    /// table again (`--resnapshot`).
    async fn reset(&self) -> Result<()>;

    /// Tests what capture needs (settings, privileges, replica identity);
    /// a line per thing checked, or the first failure as an error naming
    /// the fix.
    async fn check(&self, streams: &[StreamSpec]) -> Result<Vec<String>> {
        let _ = streams;
        Ok(Vec::new())
    }
}

/// A started capture.
#[async_trait]
pub trait ChangeFeed: Send {
    /// The next changes: as soon as at least one transaction is complete
    /// and no more are waiting, or when `limits` are reached; `Idle` after
    /// `limits.linger` without any change.
    async fn next(&mut self, limits: &BatchLimits) -> Result<Changes>;

    /// Every change up to `position` is durable in every sink.
    async fn confirm(&mut self, position: &Position) -> Result<()>;

    /// How far behind the source's newest change the feed is, in the
    /// source's own unit (bytes of log), when known.
    fn lag(&self) -> Option<u64> {
        None
    }

    /// Stops reading; what was confirmed stays confirmed.
    async fn close(self: Box<Self>) -> Result<()>;
}
