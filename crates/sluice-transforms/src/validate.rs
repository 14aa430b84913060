//! `validate`: row rules (required, not null, type, unique, regex, allowed
//! values, free SQL checks). A row that breaks any rule is a rejection
//! listing every rule it broke; the rest of the batch goes on unchanged.
//!
//! Rules that are expressions (regex, allowed values, checks) are compiled
//! once per stream to DataFusion physical expressions; as in a SQL `CHECK`
//! constraint, a rule that evaluates to NULL passes.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, BooleanArray};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use datafusion::common::DFSchema;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use serde::Deserialize;
use sluice_core::types::{arrow_type_name, parse_type};
use sluice_core::{Applied, Batch, Error, Result, Stage, Transform, TransformFactory};

use crate::cast::unknown_column;

/// `[[transforms]] type = "validate"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateConfig {
    /// Columns that must be present, not NULL and not empty text.
    #[serde(default)]
    pub required: Vec<String>,
    /// Columns that must not be NULL.
    #[serde(default)]
    pub not_null: Vec<String>,
    /// Columns whose values must be unique over the whole stream (NULLs aside).
    #[serde(default)]
    pub unique: Vec<String>,
    /// Types values must convert to: `age = "int32"`.
    #[serde(default)]
    pub types: BTreeMap<String, String>,
    /// Regular expressions values must match: `email = '^[^@]+@[^@]+$'`.
    #[serde(default)]
    pub regex: BTreeMap<String, String>,
    /// Allowed values: `status = ["open", "closed"]`.
    #[serde(default)]
    pub allowed: BTreeMap<String, Vec<String>>,
    /// Named SQL conditions rows must meet: `positive = "amount > 0"`.
    #[serde(default)]
    pub checks: BTreeMap<String, String>,
}

/// Plans a `validate` transform.
pub struct ValidateFactory {
    label: String,
    cfg: ValidateConfig,
}

impl ValidateFactory {
    pub fn new(label: impl Into<String>, cfg: ValidateConfig) -> Result<Self> {
        let label = label.into();
        for (c, t) in &cfg.types {
            parse_type(t).map_err(|e| Error::config(format!("{label}.types.{c}"), e))?;
        }
        for (c, r) in &cfg.regex {
            regex::Regex::new(r).map_err(|e| Error::config(format!("{label}.regex.{c}"), e.to_string()))?;
        }
        Ok(ValidateFactory { label, cfg })
    }
}

fn sql_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// One expression rule: rows where it is false fail with `reason`.
struct ExprRule {
    expr: Arc<dyn PhysicalExpr>,
    /// Column whose value is quoted in the reason.
    column: Option<usize>,
    reason: String,
}

impl TransformFactory for ValidateFactory {
    fn name(&self) -> &str {
        &self.label
    }

    fn plan(&self, _stream: &str, input: SchemaRef) -> Result<Box<dyn Transform>> {
        let col = |c: &str| input.index_of(c).map_err(|_| unknown_column(&self.label, c, &input));
        let df_schema =
            DFSchema::try_from(input.as_ref().clone()).map_err(|e| Error::config(&self.label, e.to_string()))?;
        let ctx = SessionContext::new();
        let compile = |key: String, sql: String| -> Result<Arc<dyn PhysicalExpr>> {
            let expr = ctx
                .parse_sql_expr(&sql, &df_schema)
                .map_err(|e| Error::config(&key, e.to_string()))?;
            ctx.state()
                .create_physical_expr(expr, &df_schema)
                .map_err(|e| Error::config(&key, e.to_string()))
        };
        let mut rules = Vec::new();
        for c in &self.cfg.required {
            let i = col(c)?;
            let text = matches!(
                input.field(i).data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            );
            let sql = if text {
                format!("{} IS NOT NULL AND {} <> ''", ident(c), ident(c))
            } else {
                format!("{} IS NOT NULL", ident(c))
            };
            rules.push(ExprRule {
                expr: compile(format!("{}.required", self.label), sql)?,
                column: None,
                reason: format!("column `{c}` is required"),
            });
        }
        for c in &self.cfg.not_null {
            col(c)?;
            let sql = format!("{} IS NOT NULL", ident(c));
            rules.push(ExprRule {
                expr: compile(format!("{}.not_null", self.label), sql)?,
                column: None,
                reason: format!("column `{c}` is null"),
            });
        }
        for (c, pattern) in &self.cfg.regex {
            let i = col(c)?;
            let sql = format!("regexp_like(CAST({} AS VARCHAR), {})", ident(c), sql_quote(pattern));
            rules.push(ExprRule {
                expr: compile(format!("{}.regex.{c}", self.label), sql)?,
                column: Some(i),
                reason: format!("does not match /{pattern}/"),
            });
        }
        for (c, values) in &self.cfg.allowed {
            let i = col(c)?;
            let list: Vec<String> = values.iter().map(|v| sql_quote(v)).collect();
            let sql = format!("CAST({} AS VARCHAR) IN ({})", ident(c), list.join(", "));
            rules.push(ExprRule {
                expr: compile(format!("{}.allowed.{c}", self.label), sql)?,
                column: Some(i),
                reason: format!("is not one of {}", values.join(", ")),
            });
        }
        for (name, sql) in &self.cfg.checks {
            rules.push(ExprRule {
                expr: compile(format!("{}.checks.{name}", self.label), sql.clone())?,
                column: None,
                reason: format!("check `{name}` ({sql}) failed"),
            });
        }
        let mut types = Vec::new();
        for (c, t) in &self.cfg.types {
            let to = parse_type(t).map_err(|e| Error::config(format!("{}.types.{c}", self.label), e))?;
            types.push((col(c)?, to));
        }
        let mut unique = Vec::new();
        for c in &self.cfg.unique {
            unique.push((col(c)?, HashSet::new()));
        }
        Ok(Box::new(Validate {
            label: self.label.as_str().into(),
            schema: input,
            rules,
            types,
            unique,
        }))
    }
}

struct Validate {
    label: Arc<str>,
    schema: SchemaRef,
    rules: Vec<ExprRule>,
    types: Vec<(usize, DataType)>,
    unique: Vec<(usize, HashSet<String>)>,
}

#[async_trait]
impl Transform for Validate {
    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    async fn apply(&mut self, batch: Batch) -> Result<Applied> {
        let n = batch.num_rows();
        let data = &batch.data;
        let mut failures: Vec<Vec<String>> = vec![Vec::new(); n];
        let fmt = FormatOptions::default();
        let field_name = |i: usize| self.schema.field(i).name().clone();
        for rule in &self.rules {
            let result = rule.expr.evaluate(data).and_then(|v| v.into_array(n)).map_err(|e| {
                Error::data(
                    batch.origin.to_string(),
                    format!("{}: {}", self.label, crate::sql::clean(&e)),
                )
            })?;
            let ok = result
                .as_any()
                .downcast_ref::<BooleanArray>()
                .ok_or_else(|| Error::Internal("rule is not boolean".into()))?;
            let shown = match rule.column {
                Some(c) => Some(ArrayFormatter::try_new(data.column(c).as_ref(), &fmt)?),
                None => None,
            };
            for (i, f) in failures.iter_mut().enumerate() {
                if ok.is_valid(i) && !ok.value(i) {
                    f.push(match (&shown, rule.column) {
                        (Some(s), Some(c)) => format!("column `{}`: '{}' {}", field_name(c), s.value(i), rule.reason),
                        _ => rule.reason.clone(),
                    });
                }
            }
        }
        let safe = CastOptions {
            safe: true,
            ..Default::default()
        };
        for (c, to) in &self.types {
            let from = data.column(*c);
            let cast = cast_with_options(from, to, &safe)?;
            if cast.null_count() > from.null_count() {
                let shown = ArrayFormatter::try_new(from.as_ref(), &fmt)?;
                for (i, f) in failures.iter_mut().enumerate() {
                    if cast.is_null(i) && from.is_valid(i) {
                        f.push(format!(
                            "column `{}`: '{}' is not a valid {}",
                            field_name(*c),
                            shown.value(i),
                            arrow_type_name(to)
                        ));
                    }
                }
            }
        }
        for (c, seen) in &mut self.unique {
            let column = data.column(*c);
            let shown = ArrayFormatter::try_new(column.as_ref(), &fmt)?;
            for (i, f) in failures.iter_mut().enumerate() {
                // A row already failing does not claim its value.
                if column.is_valid(i) && f.is_empty() {
                    let v = shown.value(i).to_string();
                    if seen.contains(&v) {
                        f.push(format!(
                            "column `{}`: '{v}' is a duplicate",
                            self.schema.field(*c).name()
                        ));
                    } else {
                        seen.insert(v);
                    }
                }
            }
        }
        if failures.iter().all(Vec::is_empty) {
            return Ok(Applied {
                batch: Some(batch),
                rejections: Vec::new(),
            });
        }
        let rejections = failures
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.is_empty())
            .map(|(i, f)| batch.reject_row(i, Stage::Transform, &self.label, f.join("; ")))
            .collect();
        let keep = BooleanArray::from(failures.iter().map(Vec::is_empty).collect::<Vec<_>>());
        Ok(Applied {
            batch: Some(batch.filter(&keep)?),
            rejections,
        })
    }
}
