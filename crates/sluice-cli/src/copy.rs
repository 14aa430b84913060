//! `sluice copy SRC DST`: a pipeline assembled from two locations, validated
//! by the same code as a pipeline file.

use std::path::PathBuf;

use sluice_engine::{ConfigError, Pipeline};
use toml::{Table, Value};

use crate::cli::CopyArgs;

fn err(message: String) -> ConfigError {
    ConfigError {
        file: "copy".into(),
        line: None,
        column: None,
        key: None,
        message,
    }
}

/// Splits `scheme://rest?k=v&k2=v2`.
fn split_url(s: &str) -> (String, Vec<(String, String)>) {
    let (body, query) = s.split_once('?').unwrap_or((s, ""));
    let params = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    (body.to_string(), params)
}

fn reject_params(url: &str, params: &[(String, String)], allowed: &[&str]) -> Result<(), ConfigError> {
    for (k, _) in params {
        if !allowed.contains(&k.as_str()) {
            return Err(err(format!(
                "`{url}`: unknown parameter `{k}`; this location takes {}",
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            )));
        }
    }
    Ok(())
}

/// The connector type of a database URL, if it is one.
fn database_scheme(url: &str) -> Option<&'static str> {
    let scheme = url.split_once("://")?.0.to_ascii_lowercase();
    match scheme.as_str() {
        "postgres" | "postgresql" => Some("postgres"),
        "mysql" | "mariadb" => Some("mysql"),
        _ => None,
    }
}

/// A database location: `type`, `url` without sluice's own parameters, and
/// those parameters (`table`, `schema`, `partitions`, `mode`, `key`,
/// `identifiers`) as config keys.
fn database_table(kind: &str, url: &str, ours: &[&str]) -> Table {
    let (body, params) = split_url(url);
    let mut t = Table::new();
    t.insert("type".into(), kind.into());
    let mut pass = Vec::new();
    for (k, v) in params {
        if ours.contains(&k.as_str()) {
            let value: Value = match (k.as_str(), v.parse::<i64>()) {
                ("key", _) => Value::Array(v.split(',').map(|s| Value::from(s.trim())).collect()),
                ("partitions", Ok(n)) => Value::Integer(n),
                _ => v.into(),
            };
            t.insert(k, value);
        } else {
            pass.push(format!("{k}={v}"));
        }
    }
    // MySQL URLs name mariadb:// as mysql:// for the client library.
    let body = match body.split_once("://") {
        Some((scheme, rest)) if kind == "mysql" && scheme.eq_ignore_ascii_case("mariadb") => format!("mysql://{rest}"),
        _ => body,
    };
    let url = if pass.is_empty() {
        body
    } else {
        format!("{body}?{}", pass.join("&"))
    };
    t.insert("url".into(), url.into());
    t
}

/// The connector type of a search engine URL, if it is one.
fn search_scheme(url: &str) -> Option<&'static str> {
    let scheme = url.split_once("://")?.0.to_ascii_lowercase();
    match scheme.as_str() {
        "elasticsearch" | "es" => Some("elasticsearch"),
        "opensearch" => Some("opensearch"),
        _ => None,
    }
}

/// `elasticsearch://[user:password@]host:port/INDEX?tls=true&…`: the
/// cluster URL (`http://`, or `https://` with `tls=true`), the index, and
/// the parameters `ours` allows as config keys.
fn search_table(kind: &str, url: &str, ours: &[&str]) -> Result<Table, ConfigError> {
    let (body, params) = split_url(url);
    let rest = body.split_once("://").map_or("", |(_, r)| r);
    let (host, index) = rest.split_once('/').unwrap_or((rest, ""));
    let index = index.trim_end_matches('/');
    if host.is_empty() {
        return Err(err(format!(
            "`{url}`: name the cluster, e.g. {kind}://localhost:9200/INDEX"
        )));
    }
    let mut t = Table::new();
    t.insert("type".into(), kind.into());
    let mut tls = false;
    for (k, v) in params {
        match k.as_str() {
            "tls" => tls = matches!(v.as_str(), "true" | "1" | "yes"),
            k if ours.contains(&k) => {
                let value: Value = match v.parse::<i64>() {
                    Ok(n) if k == "slices" || k == "bulk_docs" || k == "concurrency" => Value::Integer(n),
                    _ if k == "gzip" => Value::Boolean(matches!(v.as_str(), "true" | "1" | "yes")),
                    _ => v.into(),
                };
                t.insert(k.to_string(), value);
            }
            _ => {
                return Err(err(format!(
                    "`{url}`: unknown parameter `{k}`; this location takes tls, {}",
                    ours.join(", ")
                )));
            }
        }
    }
    let scheme = if tls { "https" } else { "http" };
    t.insert("url".into(), format!("{scheme}://{host}").into());
    if !index.is_empty() {
        t.insert("index".into(), index.into());
    }
    Ok(t)
}

/// Whether a location is an object store URL (read and written as files).
/// Whether `path` is a SQLite database file (by its header, whatever its name).
fn is_sqlite_file(path: &str) -> bool {
    use std::io::Read;
    let mut header = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .is_ok_and(|_| &header == b"SQLite format 3\0")
}

fn object_store_url(s: &str) -> bool {
    ["s3://", "gs://", "az://", "abfs://"].iter().any(|p| s.starts_with(p))
}

pub(crate) fn source_table(a: &CopyArgs) -> Result<Table, ConfigError> {
    if let Some(kind) = search_scheme(&a.src) {
        let t = search_table(kind, &a.src, &["slices", "query", "paging"])?;
        if !t.contains_key("index") {
            return Err(err(format!(
                "`{}`: name the index to read, e.g. {kind}://localhost:9200/orders",
                a.src
            )));
        }
        return Ok(t);
    }
    if let Some(kind) = database_scheme(&a.src) {
        let mut ours = vec!["table", "partitions"];
        if kind == "postgres" {
            ours.push("schema");
        }
        let mut t = database_table(kind, &a.src, &ours);
        if !a.tables.is_empty() {
            if t.contains_key("table") {
                return Err(err("give tables either with ?table= or with --tables, not both".into()));
            }
            t.insert(
                "tables".into(),
                Value::Array(a.tables.iter().map(|s| Value::from(s.as_str())).collect()),
            );
        }
        return Ok(t);
    }
    let mut t = Table::new();
    // `sqlite://PATH`, or a plain path to a SQLite database file.
    let sqlite = match a.src.strip_prefix("sqlite://") {
        Some(rest) => Some(split_url(rest)),
        None if a.input_format.is_none() && is_sqlite_file(&a.src) => Some((a.src.clone(), Vec::new())),
        None => None,
    };
    if let Some((path, params)) = sqlite {
        reject_params(&a.src, &params, &["table"])?;
        t.insert("type".into(), "sqlite".into());
        t.insert("path".into(), path.into());
        if let Some((_, v)) = params.iter().find(|(k, _)| k == "table") {
            if !a.tables.is_empty() {
                return Err(err("give tables either with ?table= or with --tables, not both".into()));
            }
            t.insert("table".into(), v.clone().into());
        }
        if !a.tables.is_empty() {
            t.insert(
                "tables".into(),
                Value::Array(a.tables.iter().map(|s| Value::from(s.as_str())).collect()),
            );
        }
        return Ok(t);
    }
    if !a.tables.is_empty() {
        return Err(err(
            "--tables needs a database source (postgres://, mysql:// or a SQLite file)".into(),
        ));
    }
    if a.src.contains("://") && !object_store_url(&a.src) {
        return Err(err(format!(
            "`{}`: this build reads files, `-`, s3://, sqlite://, postgres://, mysql:// and elasticsearch:// sources",
            a.src
        )));
    }
    t.insert("type".into(), "file".into());
    t.insert("path".into(), a.src.clone().into());
    if let Some(f) = &a.input_format {
        t.insert("format".into(), f.clone().into());
    } else if a.src == "-" {
        return Err(err("reading stdin needs --input-format csv|ndjson|json".into()));
    }
    if let Some(d) = a.delimiter {
        let mut csv = Table::new();
        csv.insert("delimiter".into(), d.to_string().into());
        t.insert("csv".into(), Value::Table(csv));
    }
    if let Some(e) = &a.encoding {
        t.insert("encoding".into(), e.clone().into());
    }
    Ok(t)
}

pub(crate) fn sink_table(a: &CopyArgs) -> Result<Table, ConfigError> {
    let mut t = Table::new();
    if a.dst == "null://" || a.dst == "null:" {
        t.insert("type".into(), "null".into());
        return Ok(t);
    }
    if let Some(kind) = database_scheme(&a.dst) {
        let mut ours = vec!["table", "mode", "key", "identifiers"];
        if kind == "postgres" {
            ours.push("schema");
        }
        return Ok(database_table(kind, &a.dst, &ours));
    }
    if let Some(kind) = search_scheme(&a.dst) {
        return search_table(
            kind,
            &a.dst,
            &["id", "op", "routing", "alias", "bulk_docs", "concurrency", "gzip"],
        );
    }
    if let Some(rest) = a.dst.strip_prefix("sqlite://") {
        let (path, params) = split_url(rest);
        reject_params(&a.dst, &params, &["table", "mode", "key", "identifiers"])?;
        t.insert("type".into(), "sqlite".into());
        t.insert("path".into(), path.into());
        for (k, v) in params {
            let value: Value = if k == "key" {
                Value::Array(v.split(',').map(|s| Value::from(s.trim())).collect())
            } else {
                v.into()
            };
            t.insert(k, value);
        }
        return Ok(t);
    }
    if a.dst.contains("://") && !object_store_url(&a.dst) {
        return Err(err(format!(
            "`{}`: this build writes files, `-`, s3://, sqlite://, postgres://, mysql://, elasticsearch:// and null:// destinations",
            a.dst
        )));
    }
    t.insert("type".into(), "file".into());
    // A prefix (`s3://bucket/dumps/`) gets one object per stream.
    let path = if a.dst.ends_with('/') {
        format!("{}{{stream}}.{}", a.dst, a.format.as_deref().unwrap_or("ndjson"))
    } else {
        a.dst.clone()
    };
    t.insert("path".into(), path.into());
    if let Some(f) = &a.format {
        t.insert("format".into(), f.clone().into());
    }
    Ok(t)
}

/// The default state directory for one-liners.
pub fn default_state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("sluice");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/state/sluice"),
        None => PathBuf::from(".sluice"),
    }
}

/// The pipeline `sluice copy` runs.
pub fn pipeline(a: &CopyArgs) -> Result<Pipeline, ConfigError> {
    pipeline_of(a, "copy", source_table(a)?)
}

/// The name of the pipeline that `sluice copy` or `sluice sync` (`kind`)
/// runs from SRC to DST: the same for the same locations, so a run
/// continues the last one.
pub fn pipeline_name(a: &CopyArgs, kind: &str) -> String {
    format!(
        "{kind}-{:08x}",
        sluice_engine::config::fnv1a(format!("{}\n{}", a.src, a.dst).as_bytes()) as u32
    )
}

/// The pipeline of `a` reading `source` (a `[source]` table), named for `kind`.
pub fn pipeline_of(a: &CopyArgs, kind: &str, source: Table) -> Result<Pipeline, ConfigError> {
    let mut table = Table::new();
    table.insert("source".into(), Value::Table(source));
    table.insert("sinks".into(), Value::Array(vec![Value::Table(sink_table(a)?)]));
    let mut rt = Table::new();
    rt.insert("on_error".into(), a.on_error.as_str().into());
    if let Some(p) = &a.dlq {
        rt.insert("dlq_path".into(), p.display().to_string().into());
    } else if a.on_error.as_str() == "dlq" {
        rt.insert("dlq_path".into(), "rejects.ndjson".into());
    }
    if let Some(m) = a.max_errors {
        rt.insert("max_errors".into(), Value::Integer(m as i64));
    }
    if let Some(n) = a.batch_rows {
        rt.insert("batch_rows".into(), Value::Integer(n as i64));
    }
    if let Some(n) = a.parallelism {
        rt.insert("parallelism".into(), Value::Integer(n as i64));
    }
    let state = a.state_dir.clone().unwrap_or_else(default_state_dir);
    rt.insert("state_dir".into(), state.display().to_string().into());
    table.insert("runtime".into(), Value::Table(rt));
    let name = pipeline_name(a, kind);
    // Secrets stay out of the command line: SLUICE_SOURCE__API_KEY,
    // SLUICE_SINKS__0__PASSWORD and the like, as for pipeline files.
    let overrides: Vec<(String, String)> = std::env::vars().collect();
    sluice_engine::config::apply_overrides(&mut table, &overrides).map_err(|(var, message)| ConfigError {
        file: "copy".into(),
        line: None,
        column: None,
        key: Some(var),
        message,
    })?;
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    sluice_engine::from_table(table, "copy", &name, cwd, crate::registry())
}
