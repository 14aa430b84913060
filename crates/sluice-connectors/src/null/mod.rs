//! The `null` sink: accepts every batch and keeps nothing. For benchmarks
//! and for dry runs that only count and validate.

use async_trait::async_trait;
use serde::Deserialize;
use sluice_core::{Batch, ConnectorInfo, Registry, Rejection, Result, Sink, SinkConnector, StreamInfo};

/// `[[sinks]] type = "null"` takes no options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NullSinkConfig {}

/// Discards everything it is given.
pub struct NullSink;

/// Registers the `null` sink.
pub fn register(r: &mut Registry) {
    r.add_sink(
        ConnectorInfo::new("null", "discards rows, counts them (benchmarks, dry runs)"),
        |_: NullSinkConfig, _| Ok(Box::new(NullSink) as Box<dyn SinkConnector>),
    );
}

#[async_trait]
impl SinkConnector for NullSink {
    fn name(&self) -> &str {
        "null"
    }

    fn target(&self, _stream: &str) -> String {
        "null".into()
    }

    async fn open(&self, _stream: &StreamInfo) -> Result<Box<dyn Sink>> {
        Ok(Box::new(NullSink))
    }
}

#[async_trait]
impl Sink for NullSink {
    async fn write(&mut self, _batch: &Batch) -> Result<Vec<Rejection>> {
        Ok(Vec::new())
    }

    async fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    async fn finish(&mut self, _complete: bool) -> Result<()> {
        Ok(())
    }
}
