//! The sluice engine: loads a pipeline file, runs it, and reports.
//!
//! - [`config`]: the TOML pipeline, validated before anything connects.
//! - [`run`]: the run itself — bounded channels, transforms, fan-out to
//!   sinks, ordered acknowledgements and checkpoints.
//! - [`dlq`]: the error policy for rejected rows.
//! - [`inspect`]: `check`, `plan` and `verify`, which look at a pipeline's
//!   systems without running it.
//! - [`progress`]: live counters for progress bars and logs.
//! - [`sync`]: captured changes applied to a sink until stopped.

pub mod config;
pub mod dlq;
pub mod inspect;
pub mod progress;
pub mod run;
pub mod sync;

pub use config::{ConfigError, OnError, Pipeline, PipelineConfig, RuntimeConfig, from_table, load, parse};
pub use progress::{RunProgress, StreamStats};
pub use run::{RunOutcome, RunReport, StreamReport, run};
