//! Makes the rows: partition `p` of `n` holds row numbers
//! `[rows * p / n, rows * (p + 1) / n)`, and its cursor is the next number.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use serde_json::json;
use sluice_core::{Batch, Error, PartitionSpec, Position, ReadContext, Result, Source, SourceEvent, StreamSpec};

use super::GenerateConfig;

/// Reads rows that a function of their number makes.
pub struct GenerateSource {
    cfg: GenerateConfig,
    schema: SchemaRef,
}

impl GenerateSource {
    /// Checks the configuration.
    pub fn new(cfg: GenerateConfig) -> Result<Self> {
        if cfg.partitions == 0 {
            return Err(Error::config("source.partitions", "must be at least 1"));
        }
        if cfg.streams.is_empty() {
            return Err(Error::config("source.streams", "name at least one stream"));
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("value", DataType::Float64, false),
            Field::new("name", DataType::Utf8, false),
        ]));
        Ok(GenerateSource { cfg, schema })
    }

    /// The rows numbered `from..to` (0-based; `id` counts from 1).
    fn rows(&self, from: u64, to: u64) -> Result<RecordBatch> {
        let ids: Int64Array = (from..to).map(|n| n as i64 + 1).collect();
        let values: Float64Array = (from..to).map(|n| (n % 10_000) as f64 / 100.0).collect();
        let mut names = StringBuilder::with_capacity((to - from) as usize, (to - from) as usize * self.cfg.text_bytes);
        for n in from..to {
            let mut s = format!("row {}", n + 1);
            s.truncate(self.cfg.text_bytes);
            while s.len() < self.cfg.text_bytes {
                s.push('.');
            }
            names.append_value(s);
        }
        let columns: Vec<ArrayRef> = vec![Arc::new(ids), Arc::new(values), Arc::new(names.finish())];
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

#[async_trait]
impl Source for GenerateSource {
    fn name(&self) -> &str {
        "generate"
    }

    async fn discover(&self) -> Result<Vec<StreamSpec>> {
        let (rows, n) = (self.cfg.rows, self.cfg.partitions);
        Ok(self
            .cfg
            .streams
            .iter()
            .map(|name| StreamSpec {
                name: name.as_str().into(),
                schema: self.schema.clone(),
                partitions: (0..n)
                    .map(|p| {
                        let (from, to) = (rows * p / n, rows * (p + 1) / n);
                        PartitionSpec {
                            id: format!("{name}:{p}").into(),
                            bounds: json!({ "from": from, "to": to }),
                            bytes: None,
                            rows: Some(to - from),
                        }
                    })
                    .collect(),
            })
            .collect())
    }

    async fn read(&self, stream: &StreamSpec, partition: &PartitionSpec, ctx: ReadContext) -> Result<()> {
        let bound = |k: &str| partition.bounds[k].as_u64().ok_or_else(|| Error::Internal(format!("partition {} has no `{k}`", partition.id)));
        let (first, to) = (bound("from")?, bound("to")?);
        let mut next = match &ctx.resume {
            Some(p) => p.cursor.as_u64().unwrap_or(first).clamp(first, to),
            None => first,
        };
        let step = ctx.limits.rows.max(1) as u64;
        let origin: Arc<str> = format!("generate:{}", stream.name).into();
        while next < to && !ctx.cancel.is_cancelled() {
            let end = (next + step).min(to);
            let mut batch = Batch::new(stream.name.clone(), origin.clone(), self.rows(next, end)?);
            batch.position = Some(Position {
                partition: partition.id.clone(),
                cursor: json!(end),
                rows: end - first,
            });
            if ctx.out.send(SourceEvent::Batch(batch)).await.is_err() {
                break;
            }
            next = end;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn partitions_cover_every_row_once_and_resume_from_the_cursor() {
        let cfg = GenerateConfig {
            rows: 10,
            partitions: 3,
            ..Default::default()
        };
        let src = GenerateSource::new(cfg).unwrap();
        let specs = src.discover().await.unwrap();
        let mut ids = Vec::new();
        for (i, p) in specs[0].partitions.iter().enumerate() {
            let (tx, mut rx) = tokio::sync::mpsc::channel(16);
            let resume = (i == 1).then(|| Position {
                partition: p.id.clone(),
                cursor: json!(p.bounds["from"].as_u64().unwrap() + 1),
                rows: 1,
            });
            let ctx = ReadContext {
                out: tx,
                cancel: Default::default(),
                limits: sluice_core::BatchLimits {
                    rows: 2,
                    ..Default::default()
                },
                resume,
                parallelism: 1,
                payload: None,
            };
            src.read(&specs[0], p, ctx).await.unwrap();
            while let Ok(SourceEvent::Batch(b)) = rx.try_recv() {
                let col = b.data.column(0).as_any().downcast_ref::<Int64Array>().unwrap().clone();
                ids.extend(col.values().iter().copied());
            }
        }
        // Partition 1 covers ids 4..=6 and resumes after its first row.
        assert_eq!(ids, vec![1, 2, 3, 5, 6, 7, 8, 9, 10]);
    }
}
