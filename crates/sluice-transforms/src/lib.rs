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
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TransformConfig {
    /// Any SQL query over the stream, read as the table `input`.
    Sql {
        query: String,
    },
    /// Keep rows where a SQL predicate holds: `predicate = "amount > 0"`.
    Filter {
        predicate: String,
    },
    /// Keep these columns, in this order.
    Select {
        columns: Vec<String>,
    },
    /// Rename columns: `columns = { old = "new" }`.
    Rename {
        columns: BTreeMap<String, String>,
    },
    /// Remove columns.
    Drop {
        columns: Vec<String>,
    },
    /// Change column types; values that do not convert are rejected.
    Cast {
        columns: BTreeMap<String, String>,
    },
    /// Add or replace columns with SQL expressions: `columns = { total = "price * qty" }`.
    Set {
        columns: BTreeMap<String, String>,
    },
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
    ("sql", "query = \"SELECT … FROM input\" (any DataFusion SQL; aggregations run at the end of the stream)"),
    ("filter", "predicate = \"amount > 0\" (SQL; rows where it is false or NULL are dropped)"),
    ("select", "columns = [\"a\", \"b\"] (keep, in this order)"),
    ("rename", "columns = { old = \"new\" }"),
    ("drop", "columns = [\"a\"]"),
    ("cast", "columns = { amount = \"decimal(12,2)\" } (values that do not convert are rejected)"),
    ("set", "columns = { total = \"price * qty\" } (SQL expressions; add or replace columns)"),
    ("validate", "required, not_null, unique = [cols]; types, regex, allowed, checks = { col = … } (failing rows are rejected)"),
    ("drop_fields", "fields = [\"_ref\", …] at any depth (default: the six Rally metadata fields)"),
];

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A built-in that is SQL generated from the input schema.
struct GeneratedSql {
    label: String,
    generate: Box<dyn Fn(&arrow::datatypes::Schema) -> Result<String> + Send + Sync>,
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
    configs.iter().enumerate().map(|(i, c)| build_one(&format!("transforms[{i}] ({})", c.kind()), c)).collect()
}

fn build_one(label: &str, cfg: &TransformConfig) -> Result<Box<dyn TransformFactory>> {
    let label_s = label.to_string();
    let generated = |generate: Box<dyn Fn(&arrow::datatypes::Schema) -> Result<String> + Send + Sync>| -> Box<dyn TransformFactory> {
        Box::new(GeneratedSql { label: label_s.clone(), generate })
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
                Ok(format!("SELECT {} FROM {INPUT}", columns.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")))
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
                let list: Vec<String> = schema.fields().iter().filter(|f| !columns.contains(f.name())).map(|f| ident(f.name())).collect();
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
