//! The `generate` source: a stream of numbered rows made up on the spot,
//! for trying a pipeline, load tests and benchmarks without input files.
//!
//! Every row of a stream is a function of its number alone (`id` from 1,
//! a `value`, a `name`), so a resumed run continues exactly where the
//! checkpoint says and two runs produce the same rows.

mod config;
mod source;

pub use config::GenerateConfig;
pub use source::GenerateSource;

use sluice_core::{ConnectorInfo, Registry, Source};

/// Registers the `generate` source.
pub fn register(r: &mut Registry) {
    r.add_source(
        ConnectorInfo::new("generate", "numbered rows made up on the spot (trials, load tests)").options(&[
            ("rows", "rows per stream (default 1000)"),
            ("streams", "stream names (default [\"generated\"])"),
            ("partitions", "partitions per stream, read in parallel (default 1)"),
            ("text_bytes", "length of the `name` column's text (default 16)"),
        ]),
        |c: GenerateConfig, _| Ok(Box::new(GenerateSource::new(c)?) as Box<dyn Source>),
    );
}
