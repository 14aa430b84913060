//! sluice transforms, all on DataFusion so a pipeline has one expression
//! language.
//!
//! `sql` runs a query over the stream (`SELECT … FROM input`). The
//! row-shaping built-ins — `filter`, `select`, `rename`, `drop`, `set` —
//! generate SQL and share its planner. `cast`, `validate` and `drop_fields`
//! work on Arrow arrays directly because they reject or reshape values one
//! by one. Every transform is planned once per stream, before data moves; a
//! planning error (unknown column, bad expression) is a configuration error
//! naming the transform.

mod cast;
mod drop_fields;
mod sql;
mod validate;

use std::collections::BTreeMap;

use arrow::datatypes::SchemaRef;
use serde::Deserialize;
use sluice_core::{Error, Result, Transform, TransformFactory};

pub use drop_fields::RALLY_FIELDS;
pub use sql::INPUT;
pub use validate::ValidateConfig;

/// `[[transforms]]`: one step of the transform chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TransformConfig {
    /// Any SQL query over the stream, read as the table `input`.
    Sql { query: String },
    /// Keep rows where a SQL predicate holds: `predicate = "amount > 0"`.
    Filter { predicate: String },
    /// Keep these columns, in this order.
    Select { columns: Vec<String> },
    /// Rename columns: `columns = { old = "new" }`.
    Rename { columns: BTreeMap<String, String> },
    /// Remove columns.
    Drop { columns: Vec<String> },
    /// Change column types; values that do not convert are rejected.
    Cast { columns: BTreeMap<String, String> },
    /// Add or replace columns with SQL expressions: `columns = { total = "price * qty" }`.
    Set { columns: BTreeMap<String, String> },
    /// Row rules; rows that break one are rejected with the reason.
    Validate(ValidateConfig),
    /// Remove metadata fields at any depth (default: the six Rally fields).
    DropFields {
        #[serde(default)]
        fields: Option<Vec<String>>,
    },
}

impl TransformConfig {
    /// The `type` as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            TransformConfig::Sql { .. } => "sql",
            TransformConfig::Filter { .. } => "filter",
            TransformConfig::Select { .. } => "select",
            TransformConfig::Rename { .. } => "rename",
            TransformConfig::Drop { .. } => "drop",
            TransformConfig::Cast { .. } => "cast",
            TransformConfig::Set { .. } => "set",
            TransformConfig::Validate(_) => "validate",
            TransformConfig::DropFields { .. } => "drop_fields",
        }
    }
}

/// Every transform with its options, for `sluice list`.
pub const CATALOG: &[(&str, &str)] = &[
    (
        "sql",
        "query = \"SELECT … FROM input\" (any DataFusion SQL; aggregations run at the end of the stream)",
    ),
    (
        "filter",
        "predicate = \"amount > 0\" (SQL; rows where it is false or NULL are dropped)",
    ),
    ("select", "columns = [\"a\", \"b\"] (keep, in this order)"),
    ("rename", "columns = { old = \"new\" }"),
    ("drop", "columns = [\"a\"]"),
    (
        "cast",
        "columns = { amount = \"decimal(12,2)\" } (values that do not convert are rejected)",
    ),
    (
        "set",
        "columns = { total = \"price * qty\" } (SQL expressions; add or replace columns)",
    ),
    (
        "validate",
        "required, not_null, unique = [cols]; types, regex, allowed, checks = { col = … } (failing rows are rejected)",
    ),
    (
        "drop_fields",
        "fields = [\"_ref\", …] at any depth (default: the six Rally metadata fields)",
    ),
];

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Writes a built-in's SQL for an input schema.
type Generator = Box<dyn Fn(&arrow::datatypes::Schema) -> Result<String> + Send + Sync>;

/// A built-in that is SQL generated from the input schema.
struct GeneratedSql {
    label: String,
    generate: Generator,
}

impl TransformFactory for GeneratedSql {
    fn name(&self) -> &str {
        &self.label
    }

    fn plan(&self, stream: &str, input: SchemaRef) -> Result<Box<dyn Transform>> {
        let query = (self.generate)(&input)?;
        sql::SqlFactory::new(self.label.clone(), query).plan(stream, input)
    }
}

/// Builds the factories for a transform chain; `transforms[i] (type)` labels each.
pub fn build(configs: &[TransformConfig]) -> Result<Vec<Box<dyn TransformFactory>>> {
    configs
        .iter()
        .enumerate()
        .map(|(i, c)| build_one(&format!("transforms[{i}] ({})", c.kind()), c))
        .collect()
}

/// Checks SQL syntax without a schema, so `validate` catches typos.
fn check_syntax(label: &str, key: &str, sql: &str) -> Result<()> {
    datafusion::sql::parser::DFParser::parse_sql(sql)
        .map(|_| ())
        .map_err(|e| Error::config(format!("{label}.{key}"), e.to_string()))
}

fn build_one(label: &str, cfg: &TransformConfig) -> Result<Box<dyn TransformFactory>> {
    match cfg {
        TransformConfig::Sql { query } => check_syntax(label, "query", query)?,
        TransformConfig::Filter { predicate } => {
            check_syntax(label, "predicate", &format!("SELECT * FROM {INPUT} WHERE {predicate}"))?
        }
        TransformConfig::Set { columns } => {
            for (name, expr) in columns {
                check_syntax(
                    label,
                    &format!("columns.{name}"),
                    &format!("SELECT {expr} FROM {INPUT}"),
                )?;
            }
        }
        TransformConfig::Validate(v) => {
            for (name, expr) in &v.checks {
                check_syntax(
                    label,
                    &format!("checks.{name}"),
                    &format!("SELECT 1 FROM {INPUT} WHERE {expr}"),
                )?;
            }
        }
        _ => {}
    }
    let label_s = label.to_string();
    let generated = |generate: Generator| -> Box<dyn TransformFactory> {
        Box::new(GeneratedSql {
            label: label_s.clone(),
            generate,
        })
    };
    Ok(match cfg.clone() {
        TransformConfig::Sql { query } => Box::new(sql::SqlFactory::new(label, query)),
        TransformConfig::Filter { predicate } => {
            let query = format!("SELECT * FROM {INPUT} WHERE {predicate}");
            Box::new(sql::SqlFactory::new(label, query))
        }
        TransformConfig::Select { columns } => {
            if columns.is_empty() {
                return Err(Error::config(label, "columns must name at least one column"));
            }
            let l = label.to_string();
            generated(Box::new(move |schema| {
                for c in &columns {
                    schema.index_of(c).map_err(|_| cast::unknown_column(&l, c, schema))?;
                }
                Ok(format!(
                    "SELECT {} FROM {INPUT}",
                    columns.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
                ))
            }))
        }
        TransformConfig::Rename { columns } => {
            let l = label.to_string();
            generated(Box::new(move |schema| {
                for c in columns.keys() {
                    schema.index_of(c).map_err(|_| cast::unknown_column(&l, c, schema))?;
                }
                let list: Vec<String> = schema
                    .fields()
                    .iter()
                    .map(|f| match columns.get(f.name()) {
                        Some(new) => format!("{} AS {}", ident(f.name()), ident(new)),
                        None => ident(f.name()),
                    })
                    .collect();
                Ok(format!("SELECT {} FROM {INPUT}", list.join(", ")))
            }))
        }
        TransformConfig::Drop { columns } => {
            let l = label.to_string();
            generated(Box::new(move |schema| {
                for c in &columns {
                    schema.index_of(c).map_err(|_| cast::unknown_column(&l, c, schema))?;
                }
                let list: Vec<String> = schema
                    .fields()
                    .iter()
                    .filter(|f| !columns.contains(f.name()))
                    .map(|f| ident(f.name()))
                    .collect();
                if list.is_empty() {
                    return Err(Error::config(&l, "dropping every column leaves nothing to write"));
                }
                Ok(format!("SELECT {} FROM {INPUT}", list.join(", ")))
            }))
        }
        TransformConfig::Set { columns } => {
            if columns.is_empty() {
                return Err(Error::config(label, "columns must set at least one column"));
            }
            generated(Box::new(move |schema| {
                let mut list: Vec<String> = schema
                    .fields()
                    .iter()
                    .map(|f| match columns.get(f.name()) {
                        Some(expr) => format!("{expr} AS {}", ident(f.name())),
                        None => ident(f.name()),
                    })
                    .collect();
                for (name, expr) in &columns {
                    if schema.index_of(name).is_err() {
                        list.push(format!("{expr} AS {}", ident(name)));
                    }
                }
                Ok(format!("SELECT {} FROM {INPUT}", list.join(", ")))
            }))
        }
        TransformConfig::Cast { columns } => Box::new(cast::CastFactory::new(label, columns)?),
        TransformConfig::Validate(v) => Box::new(validate::ValidateFactory::new(label, v)?),
        TransformConfig::DropFields { fields } => Box::new(drop_fields::DropFieldsFactory::new(label, fields)),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray, UInt64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use sluice_core::{Batch, Position};

    use super::*;

    fn input() -> Batch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("qty", DataType::Utf8, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let data = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
                Arc::new(StringArray::from(vec![Some("10"), Some("x"), None, Some("40")])),
                Arc::new(StringArray::from(vec!["a", "b", "c", "d"])),
            ],
        )
        .unwrap();
        let mut b = Batch::new("s".into(), "f.csv".into(), data);
        b.lines = Some(Arc::new(UInt64Array::from(vec![2, 3, 4, 5])));
        b.position = Some(Position {
            partition: "f.csv".into(),
            cursor: 99.into(),
            rows: 4,
        });
        b
    }

    fn plan(cfg: &str) -> Box<dyn Transform> {
        let cfg: TransformConfig = toml::from_str(cfg).unwrap();
        build(&[cfg])
            .unwrap()
            .remove(0)
            .plan("s", input().data.schema())
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn sql_filter_keeps_positions_and_lines() {
        let mut t = plan("type = \"sql\"\nquery = \"SELECT id * 10 AS x, name FROM input WHERE id % 2 = 0\"");
        let out = t.apply(input()).await.unwrap().batch.unwrap();
        assert_eq!(out.num_rows(), 2);
        assert_eq!(out.line(0), Some(3));
        assert_eq!(out.line(1), Some(5));
        assert_eq!(out.position.as_ref().map(|p| p.rows), Some(4));
        let x = out.data.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(x.values(), &[20, 40]);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn sql_errors_are_isolated_to_the_failing_rows() {
        let mut t = plan("type = \"sql\"\nquery = \"SELECT id, CAST(qty AS BIGINT) AS qty FROM input\"");
        let applied = t.apply(input()).await.unwrap();
        let out = applied.batch.unwrap();
        assert_eq!(out.num_rows(), 3);
        assert_eq!(applied.rejections.len(), 1);
        assert_eq!(applied.rejections[0].line, Some(3));
        assert!(
            applied.rejections[0].reason.contains('x'),
            "{}",
            applied.rejections[0].reason
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn aggregation_waits_for_the_end_and_carries_the_last_position() {
        let mut t = plan("type = \"sql\"\nquery = \"SELECT count(*) AS n FROM input\"");
        assert!(t.apply(input()).await.unwrap().batch.is_none());
        assert!(t.apply(input()).await.unwrap().batch.is_none());
        let out = t.finish().await.unwrap().batch.unwrap();
        let n = out.data.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(n.value(0), 8);
        assert!(out.position.is_some());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn cast_rejects_values_that_do_not_convert() {
        let mut t = plan("type = \"cast\"\ncolumns = { qty = \"int32\" }");
        let applied = t.apply(input()).await.unwrap();
        assert_eq!(
            applied.batch.unwrap().num_rows(),
            3,
            "null stays null, only 'x' is refused"
        );
        assert_eq!(applied.rejections.len(), 1);
        assert_eq!(applied.rejections[0].reason, "column `qty`: cannot cast 'x' to int32");
    }

    #[test]
    fn unknown_columns_are_config_errors_naming_the_transform() {
        let cfg: TransformConfig = toml::from_str("type = \"select\"\ncolumns = [\"nope\"]").unwrap();
        let err = build(&[cfg])
            .unwrap()
            .remove(0)
            .plan("s", input().data.schema())
            .err()
            .unwrap();
        let msg = err.to_string();
        assert!(
            msg.contains("transforms[0] (select)") && msg.contains("nope") && msg.contains("id, qty, name"),
            "{msg}"
        );
        let cfg: TransformConfig = toml::from_str("type = \"filter\"\npredicate = \"idd > 1\"").unwrap();
        assert!(
            build(&[cfg])
                .unwrap()
                .remove(0)
                .plan("s", input().data.schema())
                .is_err()
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn validate_checks_and_types() {
        let mut t = plan("type = \"validate\"\ntypes = { qty = \"int64\" }\nchecks = { small = \"id < 4\" }");
        let applied = t.apply(input()).await.unwrap();
        assert_eq!(applied.batch.unwrap().num_rows(), 2);
        let reasons: Vec<_> = applied.rejections.iter().map(|r| (r.line, r.reason.clone())).collect();
        assert_eq!(
            reasons[0],
            (Some(3), "column `qty`: 'x' is not a valid int64".to_string())
        );
        assert_eq!(reasons[1], (Some(5), "check `small` (id < 4) failed".to_string()));
    }
}
