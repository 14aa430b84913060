//! What database connectors record about columns and tables beyond the Arrow
//! type, so a sink can rebuild a faithful table.
//!
//! Arrow says *what* a value is (a `Decimal128(12,2)`, a UTF-8 string); a
//! database also knows what the string *means* (`uuid`, `jsonb`, an enum) and
//! how the table is keyed. Sources put that in field and schema metadata under
//! the keys below; sinks read it to choose column types and to add keys and
//! indexes after the load. Metadata is a hint: a sink must still accept a
//! plain Arrow schema (from a file or a SQL transform) and map it on types.

use std::collections::HashMap;

use arrow::datatypes::{Field, Schema};
use serde::{Deserialize, Serialize};

/// Field metadata: the dialect the column comes from (`postgres`, `mysql`).
pub const DIALECT: &str = "sluice.dialect";
/// Field metadata: the column type as its database declares it
/// (`numeric(12,2)`, `character varying(40)`, `enum('a','b')`).
pub const DB_TYPE: &str = "sluice.db_type";
/// Field metadata: a dialect-neutral meaning when the Arrow type is not
/// enough: one of the [`Semantic`] names.
pub const SEMANTIC: &str = "sluice.semantic";
/// Schema metadata: the table layout as JSON ([`TableMeta`]).
pub const TABLE: &str = "sluice.table";

/// What a column means when its Arrow type alone does not say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Semantic {
    /// JSON document (Utf8).
    Json,
    /// UUID (Utf8, canonical text form).
    Uuid,
    /// One label of a fixed set (Utf8).
    Enum,
    /// A comma-separated subset of a fixed set (Utf8, MySQL `SET`).
    Set,
    /// A year (Int16, MySQL `YEAR`).
    Year,
    /// A bit string (Binary or UInt64, MySQL `BIT(n)`).
    Bit,
    /// A value the source could only read as text (`inet`, `point`, …).
    Text,
}

impl Semantic {
    /// The metadata value.
    pub fn name(self) -> &'static str {
        match self {
            Semantic::Json => "json",
            Semantic::Uuid => "uuid",
            Semantic::Enum => "enum",
            Semantic::Set => "set",
            Semantic::Year => "year",
            Semantic::Bit => "bit",
            Semantic::Text => "text",
        }
    }

    /// Parses a metadata value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "json" => Semantic::Json,
            "uuid" => Semantic::Uuid,
            "enum" => Semantic::Enum,
            "set" => Semantic::Set,
            "year" => Semantic::Year,
            "bit" => Semantic::Bit,
            "text" => Semantic::Text,
            _ => return None,
        })
    }
}

/// The database-level description of one column, read from field metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnMeta {
    pub dialect: Option<String>,
    pub db_type: Option<String>,
    pub semantic: Option<Semantic>,
}

impl ColumnMeta {
    /// Reads what a source recorded on `field`.
    pub fn of(field: &Field) -> Self {
        let m = field.metadata();
        ColumnMeta {
            dialect: m.get(DIALECT).cloned(),
            db_type: m.get(DB_TYPE).cloned(),
            semantic: m.get(SEMANTIC).and_then(|s| Semantic::parse(s)),
        }
    }

    /// The declared type, when the column comes from `dialect`.
    pub fn db_type_in(&self, dialect: &str) -> Option<&str> {
        match &self.dialect {
            Some(d) if d == dialect => self.db_type.as_deref(),
            _ => None,
        }
    }

    /// Field metadata holding this description.
    pub fn to_metadata(&self) -> HashMap<String, String> {
        let mut m = HashMap::new();
        if let Some(d) = &self.dialect {
            m.insert(DIALECT.into(), d.clone());
        }
        if let Some(t) = &self.db_type {
            m.insert(DB_TYPE.into(), t.clone());
        }
        if let Some(s) = self.semantic {
            m.insert(SEMANTIC.into(), s.name().into());
        }
        m
    }
}

/// An index of a source table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexMeta {
    pub name: String,
    pub columns: Vec<String>,
    #[serde(default)]
    pub unique: bool,
}

/// Field metadata: the labels of an enum column (JSON array, in order),
/// so a sink can create the type.
pub const ENUM_LABELS: &str = "sluice.enum_labels";

/// A foreign key of a source table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignKeyMeta {
    pub name: String,
    pub columns: Vec<String>,
    pub ref_table: String,
    pub ref_columns: Vec<String>,
    /// What deleting a referenced row does (`CASCADE`, `SET NULL`,
    /// `SET DEFAULT`, `RESTRICT`); none: refused (`NO ACTION`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_delete: Option<String>,
    /// What changing a referenced key does, as `on_delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_update: Option<String>,
}

impl ForeignKeyMeta {
    /// A referential action as SQL writes it, from PostgreSQL's one-letter
    /// code or MySQL's and SQLite's words; `NO ACTION` (and MySQL's
    /// `RESTRICT`, which InnoDB checks the same way) is no clause.
    pub fn action(code: &str) -> Option<String> {
        match code.trim().to_ascii_uppercase().as_str() {
            "C" | "CASCADE" => Some("CASCADE".into()),
            "N" | "SET NULL" => Some("SET NULL".into()),
            "D" | "SET DEFAULT" => Some("SET DEFAULT".into()),
            "R" => Some("RESTRICT".into()),
            _ => None,
        }
    }

    /// ` ON DELETE … ON UPDATE …` for the actions that are not the default.
    pub fn actions_sql(&self) -> String {
        let mut out = String::new();
        if let Some(a) = &self.on_delete {
            out.push_str(" ON DELETE ");
            out.push_str(a);
        }
        if let Some(a) = &self.on_update {
            out.push_str(" ON UPDATE ");
            out.push_str(a);
        }
        out
    }
}

/// Keys, indexes and size of a source table, carried in schema metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableMeta {
    /// Dialect of the source (`postgres`, `mysql`).
    #[serde(default)]
    pub dialect: String,
    /// Source schema (PostgreSQL) or database (MySQL).
    #[serde(default)]
    pub schema: String,
    /// Source table name.
    #[serde(default)]
    pub table: String,
    #[serde(default)]
    pub primary_key: Vec<String>,
    #[serde(default)]
    pub indexes: Vec<IndexMeta>,
    #[serde(default)]
    pub foreign_keys: Vec<ForeignKeyMeta>,
    /// Columns filled from a sequence or `AUTO_INCREMENT`.
    #[serde(default)]
    pub serial_columns: Vec<String>,
    /// The server's row estimate.
    #[serde(default)]
    pub estimated_rows: Option<u64>,
}

impl TableMeta {
    /// Reads the layout a source recorded on `schema`, if any.
    pub fn of(schema: &Schema) -> Option<Self> {
        schema.metadata().get(TABLE).and_then(|s| serde_json::from_str(s).ok())
    }

    /// Schema metadata holding this layout.
    pub fn to_metadata(&self) -> HashMap<String, String> {
        let mut m = HashMap::new();
        m.insert(TABLE.into(), serde_json::to_string(self).unwrap_or_default());
        m
    }
}

/// Field metadata: the column's default as JSON ([`ColumnDefault`]).
pub const DEFAULT: &str = "sluice.default";
/// Field metadata: what the column is set to when its row is updated, when
/// the source sets it (MySQL `ON UPDATE CURRENT_TIMESTAMP`).
pub const ON_UPDATE: &str = "sluice.on_update";
/// Field metadata: `true` when the source column is `NOT NULL` though the
/// field is nullable because the source reads some values as NULL (MySQL
/// zero dates): a created column is `NOT NULL` again, and such rows are
/// refused with the reason.
pub const NOT_NULL: &str = "sluice.not_null";
/// Whether a created column for `field` is `NOT NULL`.
pub fn not_null(field: &Field) -> bool {
    !field.is_nullable() || field.metadata().get(NOT_NULL).is_some_and(|v| v == "true")
}
/// Field metadata: the column's collation when it is not the database's
/// default, in the source's terms (`C`, `utf8mb4_bin`).
pub const COLLATION: &str = "sluice.collation";

/// A column default, in a form a sink of another database can render.
///
/// Sources translate what they can into the dialect-neutral variants; the
/// rest travels as [`ColumnDefault::Expression`], which a sink of the same
/// dialect may keep and a sink of another one drops with a warning naming
/// the column and the expression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum ColumnDefault {
    /// The current date and time (`now()`, `CURRENT_TIMESTAMP`).
    CurrentTimestamp,
    /// Today's date (`CURRENT_DATE`, `curdate()`).
    CurrentDate,
    /// A number, as written (`3`, `-4.99`).
    Number(String),
    /// A string constant, unquoted (also dates and enum labels).
    Text(String),
    /// `true` or `false`.
    Boolean(bool),
    /// An expression only the source's database understands, with its dialect.
    Expression { dialect: String, sql: String },
}

impl ColumnDefault {
    /// Reads the default a source recorded on `field`.
    pub fn of(field: &Field) -> Option<Self> {
        field.metadata().get(DEFAULT).and_then(|s| serde_json::from_str(s).ok())
    }

    /// How the default reads in messages.
    pub fn describe(&self) -> String {
        match self {
            ColumnDefault::CurrentTimestamp => "CURRENT_TIMESTAMP".into(),
            ColumnDefault::CurrentDate => "CURRENT_DATE".into(),
            ColumnDefault::Number(n) => n.clone(),
            ColumnDefault::Text(t) => format!("'{}'", t.replace('\'', "''")),
            ColumnDefault::Boolean(b) => b.to_string(),
            ColumnDefault::Expression { sql, .. } => sql.clone(),
        }
    }
}

/// Whether `field` is fixed-length character data whose trailing blanks are
/// padding (PostgreSQL `character(n)`, MySQL `char(n)`): both databases
/// ignore them in comparisons, and MySQL strips them when read.
pub fn blank_padded(field: &Field) -> bool {
    let meta = ColumnMeta::of(field);
    let Some(t) = meta.db_type.as_deref().map(str::to_ascii_lowercase) else {
        return false;
    };
    match meta.dialect.as_deref() {
        Some("postgres") => t.starts_with("character(") || t == "character" || t == "bpchar",
        Some("mysql") => t.starts_with("char(") || t == "char",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::DataType;

    #[test]
    fn column_and_table_meta_round_trip_through_arrow_metadata() {
        let meta = ColumnMeta {
            dialect: Some("postgres".into()),
            db_type: Some("numeric(12,2)".into()),
            semantic: None,
        };
        let field = Field::new("amount", DataType::Utf8, true).with_metadata(meta.to_metadata());
        assert_eq!(ColumnMeta::of(&field), meta);
        assert_eq!(ColumnMeta::of(&field).db_type_in("postgres"), Some("numeric(12,2)"));
        assert_eq!(ColumnMeta::of(&field).db_type_in("mysql"), None);

        let table = TableMeta {
            dialect: "mysql".into(),
            table: "orders".into(),
            primary_key: vec!["id".into()],
            foreign_keys: vec![ForeignKeyMeta {
                name: "orders_customer_fkey".into(),
                columns: vec!["customer".into()],
                ref_table: "customers".into(),
                ref_columns: vec!["id".into()],
                on_delete: Some("CASCADE".into()),
                on_update: None,
            }],
            ..Default::default()
        };
        let schema = Schema::new(vec![field]).with_metadata(table.to_metadata());
        assert_eq!(TableMeta::of(&schema), Some(table));
    }

    #[test]
    fn referential_actions_read_from_every_dialect_and_write_only_what_differs() {
        // PostgreSQL's codes, MySQL's and SQLite's words.
        assert_eq!(ForeignKeyMeta::action("c"), Some("CASCADE".into()));
        assert_eq!(ForeignKeyMeta::action("n"), Some("SET NULL".into()));
        assert_eq!(ForeignKeyMeta::action("d"), Some("SET DEFAULT".into()));
        assert_eq!(ForeignKeyMeta::action("r"), Some("RESTRICT".into()));
        assert_eq!(ForeignKeyMeta::action("a"), None);
        assert_eq!(ForeignKeyMeta::action("SET NULL"), Some("SET NULL".into()));
        assert_eq!(ForeignKeyMeta::action("NO ACTION"), None);
        assert_eq!(ForeignKeyMeta::action("RESTRICT"), None);
        let fk = ForeignKeyMeta {
            on_delete: Some("SET NULL".into()),
            on_update: Some("CASCADE".into()),
            ..Default::default()
        };
        assert_eq!(fk.actions_sql(), " ON DELETE SET NULL ON UPDATE CASCADE");
        assert_eq!(ForeignKeyMeta::default().actions_sql(), "");
    }
}
