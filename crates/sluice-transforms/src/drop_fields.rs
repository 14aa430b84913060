//! `drop_fields`: remove metadata fields at any depth of nested records
//! (Rally exports carry six of them on every object).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, ListArray, RecordBatch, StructArray};
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef};
use async_trait::async_trait;
use sluice_core::{Applied, Batch, Result, Transform, TransformFactory};

/// The metadata fields of Rally JSON exports, dropped by default.
pub use sluice_core::RALLY_FIELDS;

/// Plans a `drop_fields` transform.
pub struct DropFieldsFactory {
    label: String,
    fields: Vec<String>,
}

impl DropFieldsFactory {
    pub fn new(label: impl Into<String>, fields: Option<Vec<String>>) -> Self {
        let fields = fields.unwrap_or_else(|| RALLY_FIELDS.iter().map(|s| s.to_string()).collect());
        DropFieldsFactory {
            label: label.into(),
            fields,
        }
    }
}

impl TransformFactory for DropFieldsFactory {
    fn name(&self) -> &str {
        &self.label
    }

    fn plan(&self, _stream: &str, input: SchemaRef) -> Result<Box<dyn Transform>> {
        let fields: Vec<FieldRef> = input
            .fields()
            .iter()
            .filter(|f| !self.fields.contains(f.name()))
            .map(|f| Arc::new(prune_field(f, &self.fields)))
            .collect();
        Ok(Box::new(DropFields {
            drop: self.fields.clone(),
            output: Arc::new(Schema::new(fields)),
        }))
    }
}

fn prune_type(t: &DataType, drop: &[String]) -> DataType {
    match t {
        DataType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .filter(|f| !drop.contains(f.name()))
                .map(|f| Arc::new(prune_field(f, drop)))
                .collect::<Fields>(),
        ),
        DataType::List(item) => DataType::List(Arc::new(prune_field(item, drop))),
        other => other.clone(),
    }
}

fn prune_field(f: &Field, drop: &[String]) -> Field {
    f.clone().with_data_type(prune_type(f.data_type(), drop))
}

fn prune_array(array: &ArrayRef, drop: &[String]) -> Result<ArrayRef> {
    Ok(match array.data_type() {
        DataType::Struct(fields) => {
            let s = array.as_struct();
            let mut kept_fields = Vec::new();
            let mut kept = Vec::new();
            for (f, c) in fields.iter().zip(s.columns()) {
                if !drop.contains(f.name()) {
                    kept_fields.push(Arc::new(prune_field(f, drop)));
                    kept.push(prune_array(c, drop)?);
                }
            }
            Arc::new(StructArray::try_new(
                Fields::from(kept_fields),
                kept,
                s.nulls().cloned(),
            )?)
        }
        DataType::List(item) => {
            let l = array.as_list::<i32>();
            let values = prune_array(l.values(), drop)?;
            Arc::new(ListArray::try_new(
                Arc::new(prune_field(item, drop)),
                l.offsets().clone(),
                values,
                l.nulls().cloned(),
            )?)
        }
        _ => array.clone(),
    })
}

struct DropFields {
    drop: Vec<String>,
    output: SchemaRef,
}

#[async_trait]
impl Transform for DropFields {
    fn output_schema(&self) -> SchemaRef {
        self.output.clone()
    }

    async fn apply(&mut self, batch: Batch) -> Result<Applied> {
        let schema = batch.data.schema();
        let mut columns = Vec::new();
        for (f, c) in schema.fields().iter().zip(batch.data.columns()) {
            if !self.drop.contains(f.name()) {
                columns.push(prune_array(c, &self.drop)?);
            }
        }
        let options = arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        let data = RecordBatch::try_new_with_options(self.output.clone(), columns, &options)?;
        Ok(Applied {
            batch: Some(batch.with_data(data)),
            rejections: Vec::new(),
        })
    }
}
