//! SQL over a stream: `SELECT … FROM input`, planned once per stream by
//! DataFusion.
//!
//! A query that only projects and filters row by row (the common case, and
//! every built-in that compiles to SQL) becomes a short program of physical
//! expressions evaluated directly on each batch: rows keep their positions
//! and line numbers, and nothing is re-planned per batch. If evaluating a
//! batch fails (a cast in the query, a division by zero), the batch is
//! bisected until the failing rows stand alone; they become rejections and
//! the rest goes on. Any other query (aggregation, sort, join, window,
//! limit) needs the whole stream: its input is held and the query runs once
//! at the end of the stream, emitting its result with the last position.

use std::sync::Arc;

use arrow::array::{Array, BooleanArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::common::DFSchema;
use datafusion::datasource::MemTable;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use sluice_core::{Applied, Batch, Error, Position, Rejection, Result, Stage, Transform, TransformFactory};

/// The table name queries read from.
pub const INPUT: &str = "input";

/// Plans `query` for streams; built-ins hand their generated SQL here.
pub struct SqlFactory {
    label: String,
    query: String,
}

impl SqlFactory {
    /// `label` names the transform in errors (`transforms[2] (filter)`).
    pub fn new(label: impl Into<String>, query: impl Into<String>) -> Self {
        SqlFactory {
            label: label.into(),
            query: query.into(),
        }
    }
}

fn context(schema: SchemaRef, batches: Vec<RecordBatch>) -> datafusion::error::Result<SessionContext> {
    let ctx = SessionContext::new();
    ctx.register_table(INPUT, Arc::new(MemTable::try_new(schema, vec![batches])?))?;
    Ok(ctx)
}

impl TransformFactory for SqlFactory {
    fn name(&self) -> &str {
        &self.label
    }

    fn plan(&self, _stream: &str, input: SchemaRef) -> Result<Box<dyn Transform>> {
        let config_err = |e: datafusion::error::DataFusionError| Error::config(&self.label, format!("{e}"));
        let ctx = context(input.clone(), Vec::new()).map_err(config_err)?;
        // Planning needs no runtime: it only resolves names and types.
        let plan = futures::executor::block_on(async { ctx.sql(&self.query).await?.into_optimized_plan() })
            .map_err(config_err)?;
        let output: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        match Program::compile(&ctx, &plan).map_err(config_err)? {
            Some(program) => Ok(Box::new(RowwiseSql {
                label: self.label.as_str().into(),
                program,
                output,
            })),
            None => Ok(Box::new(WholeStreamSql {
                label: self.label.clone(),
                query: self.query.clone(),
                input,
                output,
                held: Vec::new(),
                last: None,
            })),
        }
    }
}

/// A row-by-row query as steps over a batch.
enum Step {
    /// Keep these input columns (a projection pushed into the scan).
    Columns(Vec<usize>),
    /// Keep rows where the predicate is true.
    Filter(Arc<dyn PhysicalExpr>),
    /// Compute the output columns.
    Project(Vec<Arc<dyn PhysicalExpr>>, SchemaRef),
}

struct Program {
    steps: Vec<Step>,
}

impl Program {
    /// Compiles a plan made only of projections and filters over the input;
    /// `None` for anything that needs more than one row at a time.
    fn compile(ctx: &SessionContext, plan: &LogicalPlan) -> datafusion::error::Result<Option<Program>> {
        let mut steps = Vec::new();
        if !Self::walk(ctx, plan, &mut steps)? {
            return Ok(None);
        }
        Ok(Some(Program { steps }))
    }

    fn walk(ctx: &SessionContext, plan: &LogicalPlan, steps: &mut Vec<Step>) -> datafusion::error::Result<bool> {
        let state = ctx.state();
        match plan {
            LogicalPlan::TableScan(scan) => {
                if scan.fetch.is_some() {
                    return Ok(false);
                }
                if let Some(p) = &scan.projection {
                    steps.push(Step::Columns(p.clone()));
                }
                for f in &scan.filters {
                    steps.push(Step::Filter(
                        state.create_physical_expr(f.clone(), scan.projected_schema.as_ref())?,
                    ));
                }
                Ok(true)
            }
            LogicalPlan::Filter(f) => {
                if !Self::walk(ctx, &f.input, steps)? {
                    return Ok(false);
                }
                let schema: &DFSchema = f.input.schema();
                steps.push(Step::Filter(state.create_physical_expr(f.predicate.clone(), schema)?));
                Ok(true)
            }
            LogicalPlan::Projection(p) => {
                if !Self::walk(ctx, &p.input, steps)? {
                    return Ok(false);
                }
                let schema: &DFSchema = p.input.schema();
                let exprs = p
                    .expr
                    .iter()
                    .map(|e| state.create_physical_expr(e.clone(), schema))
                    .collect::<datafusion::error::Result<_>>()?;
                steps.push(Step::Project(exprs, Arc::new(p.schema.as_arrow().clone())));
                Ok(true)
            }
            LogicalPlan::SubqueryAlias(a) => Self::walk(ctx, &a.input, steps),
            _ => Ok(false),
        }
    }

    fn run(&self, mut batch: Batch) -> datafusion::error::Result<Batch> {
        for step in &self.steps {
            batch = match step {
                Step::Columns(idx) => batch.with_data(batch.data.project(idx)?),
                Step::Filter(pred) => {
                    let mask = pred.evaluate(&batch.data)?.into_array(batch.num_rows())?;
                    let mask = mask.as_any().downcast_ref::<BooleanArray>().ok_or_else(|| {
                        datafusion::error::DataFusionError::Plan("filter is not a boolean expression".into())
                    })?;
                    // NULL counts as false, as in SQL WHERE.
                    let mask = if mask.null_count() > 0 {
                        arrow::compute::prep_null_mask_filter(mask)
                    } else {
                        mask.clone()
                    };
                    batch
                        .filter(&mask)
                        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?
                }
                Step::Project(exprs, schema) => {
                    let n = batch.num_rows();
                    let columns = exprs
                        .iter()
                        .map(|e| e.evaluate(&batch.data)?.into_array(n))
                        .collect::<datafusion::error::Result<Vec<_>>>()?;
                    let options = arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(n));
                    batch.with_data(RecordBatch::try_new_with_options(schema.clone(), columns, &options)?)
                }
            };
        }
        Ok(batch)
    }
}

struct RowwiseSql {
    label: Arc<str>,
    program: Program,
    output: SchemaRef,
}

impl RowwiseSql {
    /// Runs the program on `batch`, cutting out rows that make it fail.
    fn run_isolating(&self, batch: &Batch, kept: &mut Vec<Batch>, rejections: &mut Vec<Rejection>) {
        match self.program.run(batch.clone()) {
            Ok(out) => kept.push(out),
            Err(e) if batch.num_rows() <= 1 => {
                if batch.num_rows() == 1 {
                    rejections.push(batch.reject_row(0, Stage::Transform, &self.label, clean(&e)));
                }
            }
            Err(_) => {
                let mid = batch.num_rows() / 2;
                self.run_isolating(&batch.slice(0, mid), kept, rejections);
                self.run_isolating(&batch.slice(mid, batch.num_rows() - mid), kept, rejections);
            }
        }
    }
}

/// DataFusion's message without its layer prefixes.
pub(crate) fn clean(e: &datafusion::error::DataFusionError) -> String {
    let s = e.to_string();
    let s = s
        .trim_start_matches("Arrow error: ")
        .trim_start_matches("Execution error: ");
    s.trim_start_matches("Cast error: ")
        .trim_start_matches("Compute error: ")
        .to_string()
}

#[async_trait]
impl Transform for RowwiseSql {
    fn output_schema(&self) -> SchemaRef {
        self.output.clone()
    }

    async fn apply(&mut self, batch: Batch) -> Result<Applied> {
        if let Ok(out) = self.program.run(batch.clone()) {
            return Ok(Applied {
                batch: Some(out),
                rejections: Vec::new(),
            });
        }
        let mut kept = Vec::new();
        let mut rejections = Vec::new();
        self.run_isolating(&batch, &mut kept, &mut rejections);
        let datas: Vec<RecordBatch> = kept.iter().map(|b| b.data.clone()).collect();
        let data = concat_batches(&self.output, &datas)?;
        let mut out = batch.with_data(data);
        let lines: Vec<u64> = kept
            .iter()
            .flat_map(|b| (0..b.num_rows()).filter_map(move |i| b.line(i)))
            .collect();
        out.lines = (lines.len() == out.num_rows()).then(|| Arc::new(arrow::array::UInt64Array::from(lines)));
        Ok(Applied {
            batch: Some(out),
            rejections,
        })
    }
}

/// A query over the whole stream, run when the stream ends.
struct WholeStreamSql {
    label: String,
    query: String,
    input: SchemaRef,
    output: SchemaRef,
    held: Vec<Batch>,
    last: Option<Position>,
}

#[async_trait]
impl Transform for WholeStreamSql {
    fn output_schema(&self) -> SchemaRef {
        self.output.clone()
    }

    async fn apply(&mut self, batch: Batch) -> Result<Applied> {
        if batch.position.is_some() {
            self.last = batch.position.clone();
        }
        self.held.push(batch);
        Ok(Applied::default())
    }

    async fn finish(&mut self) -> Result<Applied> {
        let Some(first) = self.held.first() else {
            return Ok(Applied::default());
        };
        let (stream, origin) = (first.stream.clone(), first.origin.clone());
        let batches: Vec<RecordBatch> = self.held.drain(..).map(|b| b.data).collect();
        let fail = |e: datafusion::error::DataFusionError| {
            Error::data(format!("{} in stream {stream}", self.label), clean(&e))
        };
        let ctx = context(self.input.clone(), batches).map_err(fail)?;
        let results = ctx
            .sql(&self.query)
            .await
            .map_err(fail)?
            .collect()
            .await
            .map_err(fail)?;
        let data = concat_batches(&self.output, &results)?;
        let mut out = Batch::new(stream.clone(), origin, data);
        out.position = self.last.take();
        Ok(Applied {
            batch: Some(out),
            rejections: Vec::new(),
        })
    }
}
