//! What a PostgreSQL table carries beyond its rows and keys, for faithful
//! copies into other databases and back: column defaults and collations,
//! the foreign keys of a partitioned table (declared on its partitions), the
//! objects no stream carries (views, triggers, routines), and defaults
//! rendered for tables the sink creates.
//!
//! Defaults travel as [`ColumnDefault`]: `now()` and `CURRENT_TIMESTAMP`,
//! `CURRENT_DATE`, numbers, string constants (with their casts removed) and
//! booleans are understood by every sink; any other expression is kept for
//! PostgreSQL destinations of the same shape only when the server accepts
//! it, and dropped with a warning elsewhere. Sequence defaults (`nextval`)
//! are not defaults here: the column is an identity ([`TableMeta::serial_columns`]).
//!
//! [`TableMeta::serial_columns`]: sluice_core::dbmeta::TableMeta

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use sluice_core::dbmeta::{COLLATION, ColumnDefault, DEFAULT, ForeignKeyMeta, ON_UPDATE};
use sluice_core::{NotCopied, Result};
use tokio_postgres::Client;

use super::types::literal;
use super::{ENUM_LABELS, get, pg_error};

/// Field metadata to add to each column, by column name.
pub(super) type Extras = HashMap<String, HashMap<String, String>>;

/// Defaults and non-default collations of the columns of table `oid`.
pub(super) async fn column_extras(client: &Client, url: &str, oid: u32) -> Result<Extras> {
    let rows = client
        .query(
            "SELECT a.attname::text, pg_get_expr(d.adbin, d.adrelid), \
             CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation THEN co.collname::text END, \
             a.attgenerated::text \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             LEFT JOIN pg_collation co ON co.oid = a.attcollation \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped",
            &[&oid],
        )
        .await
        .map_err(|e| pg_error(url, e))?;
    let mut extras = Extras::new();
    for r in &rows {
        let name: String = get(r, 0, "a column name (pg_attribute.attname)")?;
        let what = |field: &str| format!("{field} of column {name}");
        let default: Option<String> = get(r, 1, &what("the default (pg_attrdef)"))?;
        let collation: Option<String> = get(r, 2, &what("the collation"))?;
        let generated: String = get(r, 3, &what("pg_attribute.attgenerated"))?;
        let mut md = HashMap::new();
        // A generated column's expression is not a default: its values are copied.
        if let Some(d) = default.filter(|_| generated.is_empty()).and_then(|d| parse_default(&d))
            && let Ok(json) = serde_json::to_string(&d)
        {
            md.insert(DEFAULT.to_string(), json);
        }
        if let Some(c) = collation {
            md.insert(COLLATION.to_string(), c);
        }
        if !md.is_empty() {
            extras.insert(name, md);
        }
    }
    Ok(extras)
}

/// `schema` with each field's metadata extended by `extras`.
pub(crate) fn annotate(schema: &SchemaRef, extras: &Extras) -> SchemaRef {
    if extras.is_empty() {
        return schema.clone();
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match extras.get(f.name()) {
            Some(more) => {
                let mut md = f.metadata().clone();
                md.extend(more.iter().map(|(k, v)| (k.clone(), v.clone())));
                f.as_ref().clone().with_metadata(md)
            }
            None => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields).with_metadata(schema.metadata().clone()))
}

/// A default as `pg_get_expr` prints it, made dialect-neutral when it can
/// be; `None` for no default (`NULL`) and for sequences.
pub(crate) fn parse_default(expr: &str) -> Option<ColumnDefault> {
    let e = expr.trim();
    let lower = e.to_ascii_lowercase();
    if lower.starts_with("nextval(") || lower == "null" || lower.starts_with("null::") {
        return None;
    }
    let now = [
        "now()",
        "current_timestamp",
        "transaction_timestamp()",
        "localtimestamp",
        "statement_timestamp()",
    ];
    if now.contains(&lower.as_str())
        || lower.starts_with("current_timestamp(")
        || lower.starts_with("localtimestamp(")
        || lower.starts_with("('now'::text)")
    {
        return Some(ColumnDefault::CurrentTimestamp);
    }
    if lower == "current_date" {
        return Some(ColumnDefault::CurrentDate);
    }
    if lower == "true" || lower == "false" {
        return Some(ColumnDefault::Boolean(lower == "true"));
    }
    // `(-1)` and `'-1'::integer` are how negative numbers print.
    let unwrapped = e.strip_prefix('(').and_then(|s| s.strip_suffix(')')).unwrap_or(e);
    if is_number(unwrapped) {
        return Some(ColumnDefault::Number(unwrapped.to_string()));
    }
    if let Some((text, cast)) = quoted_literal(e) {
        let cast = cast.to_ascii_lowercase();
        if cast.ends_with("[]") {
            // An array literal: nothing another database would read the same.
            return Some(expression(e));
        }
        let numeric = ["integer", "bigint", "smallint", "numeric", "real", "double precision"];
        if numeric.iter().any(|t| cast.ends_with(t)) && is_number(&text) {
            return Some(ColumnDefault::Number(text));
        }
        if cast.ends_with("boolean") && (text == "true" || text == "false") {
            return Some(ColumnDefault::Boolean(text == "true"));
        }
        return Some(ColumnDefault::Text(text));
    }
    Some(expression(e))
}

fn expression(sql: &str) -> ColumnDefault {
    ColumnDefault::Expression {
        dialect: "postgres".into(),
        sql: sql.to_string(),
    }
}

/// A decimal number as SQL writes it.
pub(crate) fn is_number(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (mantissa, exp) = match digits.split_once(['e', 'E']) {
        Some((m, x)) => (m, Some(x)),
        None => (digits, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |p: &str| p.chars().all(|c| c.is_ascii_digit());
    !(int.is_empty() && frac.is_empty())
        && all_digits(int)
        && all_digits(frac)
        && exp.is_none_or(|x| {
            let x = x.strip_prefix(['+', '-']).unwrap_or(x);
            !x.is_empty() && all_digits(x)
        })
}

/// `'it''s'::text` → (`it's`, `::text`): a string constant and the casts after it.
fn quoted_literal(e: &str) -> Option<(String, &str)> {
    let body = e.strip_prefix('\'')?;
    let mut text = String::new();
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            if chars.peek().is_some_and(|(_, n)| *n == '\'') {
                chars.next();
                text.push('\'');
                continue;
            }
            let rest = &body[i + 1..];
            return (rest.is_empty() || casts_only(rest)).then_some((text, rest));
        }
        text.push(c);
    }
    None
}

/// `::character varying` or `::timestamp with time zone`: casts to named types only.
fn casts_only(rest: &str) -> bool {
    rest.starts_with("::")
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | ' ' | '_' | '.' | '"' | '[' | ']'))
}

/// The foreign keys declared on the partitions of partitioned table `oid`
/// (PostgreSQL before 12 could not declare them on the table itself, and
/// dumps such as Pagila's still do it per partition), one per distinct
/// (columns, referenced table, referenced columns), named after `table`.
pub(super) async fn partition_foreign_keys(
    client: &Client,
    url: &str,
    oid: u32,
    table: &str,
    have: &[ForeignKeyMeta],
) -> Result<Vec<ForeignKeyMeta>> {
    let rows = client
        .query(
            "SELECT array(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(num, ord) \
                   JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.ord), \
             cf.relname::text, \
             array(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(num, ord) \
                   JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.ord), \
             con.confdeltype::text, con.confupdtype::text \
             FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhrelid AND p.relispartition \
             JOIN pg_constraint con ON con.conrelid = i.inhrelid AND con.contype = 'f' AND con.conparentid = 0 \
             JOIN pg_class cf ON cf.oid = con.confrelid \
             WHERE i.inhparent = $1 ORDER BY con.conname",
            &[&oid],
        )
        .await
        .map_err(|e| pg_error(url, e))?;
    let mut found: Vec<ForeignKeyMeta> = Vec::new();
    for r in &rows {
        let what = |field: &str| format!("{field} of a foreign key of a partition of table {table}");
        let fk = ForeignKeyMeta {
            columns: get(r, 0, &what("columns"))?,
            ref_table: get(r, 1, &what("referenced table"))?,
            ref_columns: get(r, 2, &what("referenced columns"))?,
            on_delete: ForeignKeyMeta::action(&get::<String>(r, 3, &what("confdeltype"))?),
            on_update: ForeignKeyMeta::action(&get::<String>(r, 4, &what("confupdtype"))?),
            ..Default::default()
        };
        let same = |f: &ForeignKeyMeta| {
            f.columns == fk.columns && f.ref_table == fk.ref_table && f.ref_columns == fk.ref_columns
        };
        if have.iter().any(same) || found.iter().any(same) {
            continue;
        }
        found.push(ForeignKeyMeta {
            name: format!("{table}_{}_fkey", fk.columns.join("_")),
            ..fk
        });
    }
    Ok(found)
}

/// Views, materialized views, triggers, routines, domains and free-standing
/// sequences of `schema` when it is read `whole`; otherwise (a chosen list
/// of tables) only the triggers of `tables`.
pub(super) async fn not_copied(
    client: &Client,
    url: &str,
    schema: &str,
    tables: &[String],
    whole: bool,
) -> Result<Vec<NotCopied>> {
    // Objects that belong to an extension come with the extension.
    let rows = client
        .query(
            "WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname = $1), \
             ext AS (SELECT objid FROM pg_depend WHERE deptype = 'e') \
             SELECT 'views', c.relname::text FROM pg_class c \
               WHERE c.relnamespace = (SELECT oid FROM ns) AND c.relkind = 'v' AND $3 \
               AND c.oid NOT IN (SELECT objid FROM ext) \
             UNION ALL SELECT 'materialized views', c.relname::text FROM pg_class c \
               WHERE c.relnamespace = (SELECT oid FROM ns) AND c.relkind = 'm' AND $3 \
               AND c.oid NOT IN (SELECT objid FROM ext) \
             UNION ALL SELECT 'triggers', tc.relname::text || '.' || t.tgname::text FROM pg_trigger t \
               JOIN pg_class tc ON tc.oid = t.tgrelid \
               WHERE tc.relnamespace = (SELECT oid FROM ns) AND NOT t.tgisinternal AND ($3 OR tc.relname = ANY($2)) \
               AND tc.relname NOT IN ('_sluice_checkpoints', '_sluice_foreign_keys') \
             UNION ALL SELECT CASE p.prokind WHEN 'p' THEN 'procedures' WHEN 'a' THEN 'aggregates' \
               ELSE 'functions' END, p.proname::text || '(' || pg_get_function_identity_arguments(p.oid) || ')' \
               FROM pg_proc p WHERE p.pronamespace = (SELECT oid FROM ns) AND $3 \
               AND p.oid NOT IN (SELECT objid FROM ext) \
             UNION ALL SELECT 'domains (copied as their base types, without checks)', t.typname::text \
               FROM pg_type t WHERE t.typnamespace = (SELECT oid FROM ns) AND t.typtype = 'd' AND $3 \
               AND t.oid NOT IN (SELECT objid FROM ext) \
             UNION ALL SELECT 'sequences not owned by a column', c.relname::text FROM pg_class c \
               WHERE c.relnamespace = (SELECT oid FROM ns) AND c.relkind = 'S' AND $3 \
               AND c.oid NOT IN (SELECT objid FROM ext) \
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i') \
                               AND d.refobjsubid > 0) \
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.refobjid = c.oid \
                               AND d.classid = 'pg_attrdef'::regclass) \
             ORDER BY 1, 2",
            &[&schema, &tables, &whole],
        )
        .await
        .map_err(|e| pg_error(url, e))?;
    let mut out: Vec<NotCopied> = Vec::new();
    for r in &rows {
        let kind: String = get(r, 0, "the kind of a schema object")?;
        let name: String = get(r, 1, "the name of a schema object")?;
        match out.last_mut() {
            Some(last) if last.kind == kind => last.names.push(name),
            _ => out.push(NotCopied {
                kind,
                names: vec![name],
            }),
        }
    }
    Ok(out)
}

/// The expression of `default` for a created column of PostgreSQL type
/// `pg_type`, or why it is dropped. PostgreSQL's own expressions are kept
/// (the caller has the server evaluate them first); other dialects' are not.
pub(super) fn render_default(default: &ColumnDefault, pg_type: &str) -> std::result::Result<String, String> {
    let t = pg_type.to_ascii_lowercase();
    let temporal = t.starts_with("timestamp") || t.starts_with("date") || t.starts_with("time");
    Ok(match default {
        ColumnDefault::CurrentTimestamp if temporal => "CURRENT_TIMESTAMP".into(),
        ColumnDefault::CurrentDate if temporal => "CURRENT_DATE".into(),
        ColumnDefault::CurrentTimestamp | ColumnDefault::CurrentDate => {
            return Err(format!("a {pg_type} column cannot take {}", default.describe()));
        }
        ColumnDefault::Number(n) => n.clone(),
        ColumnDefault::Boolean(b) if t == "boolean" => b.to_string(),
        ColumnDefault::Boolean(b) => u8::from(*b).to_string(),
        ColumnDefault::Text(s) => literal(s),
        ColumnDefault::Expression { dialect, sql } if dialect == "postgres" => sql.clone(),
        ColumnDefault::Expression { dialect, .. } => {
            return Err(format!("a {dialect} expression PostgreSQL does not share"));
        }
    })
}

/// The ` DEFAULT …` clause of column `field` of a table the sink creates,
/// with PostgreSQL type `ty`: empty when there is none or it is dropped,
/// and then a warning naming `table.column` and what was dropped. A default
/// is kept only when the server evaluates it for the type (a date string
/// MySQL allows, `0000-00-00`, is not a date here); identity columns take
/// their values from the identity added after the load.
pub(super) async fn default_clause(
    client: &Client,
    table: &str,
    field: &Field,
    ty: &str,
    identity: bool,
    warnings: &mut Vec<String>,
) -> String {
    let column = field.name();
    if let Some(on_update) = field.metadata().get(ON_UPDATE) {
        warnings.push(format!(
            "{table}.{column}: ON UPDATE {on_update} dropped: PostgreSQL sets columns on update only with a trigger"
        ));
    }
    let Some(default) = ColumnDefault::of(field).filter(|_| !identity) else {
        return String::new();
    };
    let dropped = |why: String| format!("{table}.{column}: default {} dropped: {why}", default.describe());
    let sql = match render_default(&default, ty) {
        Ok(sql) => sql,
        Err(why) => {
            warnings.push(dropped(why));
            return String::new();
        }
    };
    // An enum the sink is about to create cannot be asked about yet.
    if let Some(labels) = field.metadata().get(ENUM_LABELS) {
        let labels: Vec<String> = serde_json::from_str(labels).unwrap_or_default();
        return match &default {
            ColumnDefault::Text(t) if labels.contains(t) => format!(" DEFAULT {sql}"),
            _ => {
                warnings.push(dropped(format!("not a label of the enum {ty}")));
                String::new()
            }
        };
    }
    match client.query_one(&format!("SELECT ({sql})::{ty} IS NULL"), &[]).await {
        Ok(_) => format!(" DEFAULT {sql}"),
        Err(e) => {
            warnings.push(dropped(format!("the server refuses it for {ty} ({})", super::server_message(&e))));
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_defaults_become_neutral_where_other_databases_can_say_them() {
        use ColumnDefault::*;
        let p = |e: &str| parse_default(e);
        assert_eq!(p("now()"), Some(CurrentTimestamp));
        assert_eq!(p("CURRENT_TIMESTAMP"), Some(CurrentTimestamp));
        assert_eq!(p("CURRENT_DATE"), Some(CurrentDate));
        assert_eq!(p("nextval('film_film_id_seq'::regclass)"), None);
        assert_eq!(p("4.99"), Some(Number("4.99".into())));
        assert_eq!(p("(-1)"), Some(Number("-1".into())));
        assert_eq!(p("'-1'::integer"), Some(Number("-1".into())));
        assert_eq!(p("true"), Some(Boolean(true)));
        assert_eq!(p("'G'::mpaa_rating"), Some(Text("G".into())));
        assert_eq!(p("'it''s'::character varying"), Some(Text("it's".into())));
        assert_eq!(p("'2020-01-01 00:00:00'::timestamp without time zone"), Some(Text("2020-01-01 00:00:00".into())));
        assert_eq!(p("NULL::text"), None);
        assert!(matches!(p("'{}'::text[]"), Some(Expression { .. })));
        assert!(matches!(p("gen_random_uuid()"), Some(Expression { .. })));
        assert!(matches!(p("lower('A'::text)"), Some(Expression { .. })));
        assert!(is_number("1e10") && !is_number("1e") && !is_number(".") && !is_number("--1"));
    }

    #[test]
    fn defaults_render_for_postgres_columns() {
        assert_eq!(render_default(&ColumnDefault::CurrentTimestamp, "timestamp").unwrap(), "CURRENT_TIMESTAMP");
        assert!(render_default(&ColumnDefault::CurrentTimestamp, "integer").is_err());
        assert_eq!(render_default(&ColumnDefault::Text("a'b".into()), "text").unwrap(), "'a''b'");
        let mysql = ColumnDefault::Expression {
            dialect: "mysql".into(),
            sql: "uuid()".into(),
        };
        assert!(render_default(&mysql, "text").is_err());
    }
}
