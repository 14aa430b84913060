//! `cast`: change column types; a value that does not convert is a rejection
//! naming the column and the value, never a silent NULL.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use sluice_core::types::{arrow_type_name, parse_type};
use sluice_core::{Applied, Batch, Error, Result, Stage, Transform, TransformFactory};

/// Plans a `cast` transform.
pub struct CastFactory {
    label: String,
    columns: BTreeMap<String, String>,
}

impl CastFactory {
    pub fn new(label: impl Into<String>, columns: BTreeMap<String, String>) -> Result<Self> {
        let label = label.into();
        for (c, t) in &columns {
            parse_type(t).map_err(|e| Error::config(format!("{label}.columns.{c}"), e))?;
        }
        Ok(CastFactory { label, columns })
    }
}

impl TransformFactory for CastFactory {
    fn name(&self) -> &str {
        &self.label
    }

    fn plan(&self, _stream: &str, input: SchemaRef) -> Result<Box<dyn Transform>> {
        let mut targets = Vec::new();
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        for (column, ty) in &self.columns {
            let idx = input
                .index_of(column)
                .map_err(|_| unknown_column(&self.label, column, &input))?;
            let to = parse_type(ty).map_err(|e| Error::config(format!("{}.columns.{column}", self.label), e))?;
            if !arrow::compute::can_cast_types(input.field(idx).data_type(), &to) {
                return Err(Error::config(
                    format!("{}.columns.{column}", self.label),
                    format!(
                        "cannot cast {} to {}",
                        arrow_type_name(input.field(idx).data_type()),
                        arrow_type_name(&to)
                    ),
                ));
            }
            fields[idx] = Field::new(column, to.clone(), true);
            targets.push((idx, to));
        }
        Ok(Box::new(Cast {
            label: self.label.as_str().into(),
            targets,
            output: Arc::new(Schema::new(fields)),
        }))
    }
}

/// The config error for a column the stream does not have.
pub(crate) fn unknown_column(label: &str, column: &str, schema: &Schema) -> Error {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    Error::config(
        label,
        format!(
            "no column `{column}` in the stream; its columns are {}",
            names.join(", ")
        ),
    )
}

struct Cast {
    label: Arc<str>,
    targets: Vec<(usize, DataType)>,
    output: SchemaRef,
}

#[async_trait]
impl Transform for Cast {
    fn output_schema(&self) -> SchemaRef {
        self.output.clone()
    }

    async fn apply(&mut self, batch: Batch) -> Result<Applied> {
        let safe = CastOptions {
            safe: true,
            ..Default::default()
        };
        let n = batch.num_rows();
        let mut columns: Vec<ArrayRef> = batch.data.columns().to_vec();
        let mut bad: Vec<Option<String>> = vec![None; n];
        for (idx, to) in &self.targets {
            let from = &columns[*idx];
            let cast = cast_with_options(from, to, &safe)?;
            if cast.null_count() > from.null_count() {
                let shown = ArrayFormatter::try_new(from.as_ref(), &FormatOptions::default())?;
                let name = self.output.field(*idx).name();
                for (i, reason) in bad.iter_mut().enumerate() {
                    if cast.is_null(i) && from.is_valid(i) && reason.is_none() {
                        *reason = Some(format!(
                            "column `{name}`: cannot cast '{}' to {}",
                            shown.value(i),
                            arrow_type_name(to)
                        ));
                    }
                }
            }
            columns[*idx] = cast;
        }
        let data = RecordBatch::try_new(self.output.clone(), columns)?;
        let out = batch.with_data(data);
        if bad.iter().all(Option::is_none) {
            return Ok(Applied {
                batch: Some(out),
                rejections: Vec::new(),
            });
        }
        let rejections = bad
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                r.as_ref()
                    .map(|reason| batch.reject_row(i, Stage::Transform, &self.label, reason.clone()))
            })
            .collect();
        let keep = BooleanArray::from(bad.iter().map(Option::is_none).collect::<Vec<_>>());
        Ok(Applied {
            batch: Some(out.filter(&keep)?),
            rejections,
        })
    }
}
