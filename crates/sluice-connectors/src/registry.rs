//! The one place that maps `type = "…"` to a connector, and the catalog
//! `sluice list` prints.

use serde::Deserialize;
use sluice_core::{Error, Result, SinkConnector, Source};

use crate::files::{FileSink, FileSinkConfig, FileSource, FileSourceConfig, Format};
#[cfg(feature = "mysql")]
use crate::mysql::{MysqlSink, MysqlSinkConfig, MysqlSource, MysqlSourceConfig};
use crate::null::{NullSink, NullSinkConfig};
#[cfg(feature = "postgres")]
use crate::postgres::{PostgresSink, PostgresSinkConfig, PostgresSource, PostgresSourceConfig};
#[cfg(feature = "search")]
use crate::search::{SearchSink, SearchSinkConfig, SearchSource, SearchSourceConfig};
#[cfg(feature = "sqlite")]
use crate::sqlite::{SqliteSink, SqliteSinkConfig, SqliteSource, SqliteSourceConfig};

/// `[source]`: where rows come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SourceConfig {
    /// Files of any supported format (by extension or `format`).
    File(FileSourceConfig),
    Csv(FileSourceConfig),
    Json(FileSourceConfig),
    #[serde(alias = "jsonl")]
    Ndjson(FileSourceConfig),
    Parquet(FileSourceConfig),
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteSourceConfig),
    #[cfg(feature = "postgres")]
    #[serde(alias = "postgresql")]
    Postgres(PostgresSourceConfig),
    #[cfg(feature = "mysql")]
    #[serde(alias = "mariadb")]
    Mysql(MysqlSourceConfig),
    #[cfg(feature = "search")]
    #[serde(alias = "es")]
    Elasticsearch(SearchSourceConfig),
    #[cfg(feature = "search")]
    Opensearch(SearchSourceConfig),
}

/// `[[sinks]]`: where rows go.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkConfig {
    /// Files of any supported format (by extension or `format`).
    File(FileSinkConfig),
    Csv(FileSinkConfig),
    Json(FileSinkConfig),
    #[serde(alias = "jsonl")]
    Ndjson(FileSinkConfig),
    Parquet(FileSinkConfig),
    /// Standard output (`format` csv, ndjson, json or table).
    Stdout(FileSinkConfig),
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteSinkConfig),
    #[cfg(feature = "postgres")]
    #[serde(alias = "postgresql")]
    Postgres(PostgresSinkConfig),
    #[cfg(feature = "mysql")]
    #[serde(alias = "mariadb")]
    Mysql(MysqlSinkConfig),
    #[cfg(feature = "search")]
    #[serde(alias = "es")]
    Elasticsearch(SearchSinkConfig),
    #[cfg(feature = "search")]
    Opensearch(SearchSinkConfig),
    /// Discards rows (counts them).
    Null(NullSinkConfig),
}

fn with_format<T>(mut cfg: T, format: Format, get: impl Fn(&mut T) -> &mut Option<Format>, key: &str) -> Result<T> {
    let slot = get(&mut cfg);
    match *slot {
        Some(f) if f != format => Err(Error::config(
            key,
            format!(
                "type = \"{}\" conflicts with format = \"{}\"; drop one",
                format.name(),
                f.name()
            ),
        )),
        _ => {
            *slot = Some(format);
            Ok(cfg)
        }
    }
}

/// Builds the source a config describes. Connects to nothing.
pub fn build_source(cfg: &SourceConfig) -> Result<Box<dyn Source>> {
    let file = |c: &FileSourceConfig, f: Format| with_format(c.clone(), f, |c| &mut c.format, "source.format");
    Ok(match cfg {
        SourceConfig::File(c) => Box::new(FileSource::new(c.clone())?),
        SourceConfig::Csv(c) => Box::new(FileSource::new(file(c, Format::Csv)?)?),
        SourceConfig::Json(c) => Box::new(FileSource::new(file(c, Format::Json)?)?),
        SourceConfig::Ndjson(c) => Box::new(FileSource::new(file(c, Format::Ndjson)?)?),
        SourceConfig::Parquet(c) => Box::new(FileSource::new(file(c, Format::Parquet)?)?),
        #[cfg(feature = "sqlite")]
        SourceConfig::Sqlite(c) => Box::new(SqliteSource::new(c.clone())?),
        #[cfg(feature = "postgres")]
        SourceConfig::Postgres(c) => Box::new(PostgresSource::new(c.clone())?),
        #[cfg(feature = "mysql")]
        SourceConfig::Mysql(c) => Box::new(MysqlSource::new(c.clone())?),
        #[cfg(feature = "search")]
        SourceConfig::Elasticsearch(c) => Box::new(SearchSource::new(c.clone(), "elasticsearch")?),
        #[cfg(feature = "search")]
        SourceConfig::Opensearch(c) => Box::new(SearchSource::new(c.clone(), "opensearch")?),
    })
}

/// Builds the sink a config describes. Creates nothing.
pub fn build_sink(cfg: &SinkConfig) -> Result<Box<dyn SinkConnector>> {
    let file = |c: &FileSinkConfig, f: Format| with_format(c.clone(), f, |c| &mut c.format, "sinks.format");
    Ok(match cfg {
        SinkConfig::File(c) => Box::new(FileSink::new(c.clone())?),
        SinkConfig::Csv(c) => Box::new(FileSink::new(file(c, Format::Csv)?)?),
        SinkConfig::Json(c) => Box::new(FileSink::new(file(c, Format::Json)?)?),
        SinkConfig::Ndjson(c) => Box::new(FileSink::new(file(c, Format::Ndjson)?)?),
        SinkConfig::Parquet(c) => Box::new(FileSink::new(file(c, Format::Parquet)?)?),
        SinkConfig::Stdout(c) => {
            if c.path != "-" {
                return Err(Error::config(
                    "sinks.path",
                    "a stdout sink has no path; use type = \"file\" to write a file",
                ));
            }
            Box::new(FileSink::new(c.clone())?)
        }
        #[cfg(feature = "sqlite")]
        SinkConfig::Sqlite(c) => Box::new(SqliteSink::new(c.clone())?),
        #[cfg(feature = "postgres")]
        SinkConfig::Postgres(c) => Box::new(PostgresSink::new(c.clone())?),
        #[cfg(feature = "mysql")]
        SinkConfig::Mysql(c) => Box::new(MysqlSink::new(c.clone())?),
        #[cfg(feature = "search")]
        SinkConfig::Elasticsearch(c) => Box::new(SearchSink::new(c.clone(), "elasticsearch")?),
        #[cfg(feature = "search")]
        SinkConfig::Opensearch(c) => Box::new(SearchSink::new(c.clone(), "opensearch")?),
        SinkConfig::Null(_) => Box::new(NullSink),
    })
}

/// Whether `sink` writes to a search engine (compared document by document).
pub fn is_search(sink: &SinkConfig) -> bool {
    #[cfg(feature = "search")]
    if matches!(sink, SinkConfig::Elasticsearch(_) | SinkConfig::Opensearch(_)) {
        return true;
    }
    let _ = sink;
    false
}

/// The document ids a search sink gives the rows of `data` (from `_id`, an
/// `id` column or template); `None` for other sinks.
pub fn document_ids(
    sink: &SinkConfig,
    stream: &str,
    data: &arrow::array::RecordBatch,
) -> Option<Result<Vec<Option<String>>>> {
    match sink {
        #[cfg(feature = "search")]
        SinkConfig::Elasticsearch(c) | SinkConfig::Opensearch(c) => Some(crate::search::document_ids(c, stream, data)),
        _ => {
            let _ = (stream, data);
            None
        }
    }
}

/// The index a search sink writes for `stream`, with template fields as
/// wildcards (`orders-{region}` reads back as `orders-*`).
#[cfg(feature = "search")]
fn index_pattern(index: Option<&str>, stream: &str) -> String {
    let mut out = String::new();
    let mut rest = index.unwrap_or("{stream}");
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        match rest[open..].find('}') {
            Some(close) => {
                let field = &rest[open + 1..open + close];
                if field == "stream" {
                    out.push_str(stream);
                } else if !out.ends_with('*') {
                    out.push('*');
                }
                rest = &rest[open + close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// A source reading back what `sink` wrote for `stream`, for `sluice verify`;
/// None for destinations that cannot be read back (stdout, text files, null).
pub fn sink_as_source(sink: &SinkConfig, stream: &str) -> Option<SourceConfig> {
    match sink {
        // Parquet keeps the types, so its rows read back as they were
        // written; text formats would be re-inferred and are not compared.
        SinkConfig::File(c) if c.path != "-" && c.resolved_format() == Some(Format::Parquet) => {
            Some(SourceConfig::File(FileSourceConfig {
                path: c.path.replace("{stream}", &crate::files::file_name_for(stream)),
                format: Some(Format::Parquet),
                compression: Default::default(),
                stream: Some(stream.to_string()),
                infer_rows: 1000,
                schema: Default::default(),
                csv: Default::default(),
                encoding: None,
            }))
        }
        #[cfg(feature = "postgres")]
        SinkConfig::Postgres(c) => Some(SourceConfig::Postgres(crate::postgres::PostgresSourceConfig {
            url: c.url.clone(),
            schema: c.schema.clone(),
            table: Some(c.table.replace("{stream}", stream)),
            tables: Vec::new(),
            exclude: Vec::new(),
            query: None,
            stream: None,
            cursor: None,
            cursor_start: None,
            partitions: None,
        })),
        #[cfg(feature = "mysql")]
        SinkConfig::Mysql(c) => Some(SourceConfig::Mysql(crate::mysql::MysqlSourceConfig {
            url: c.url.clone(),
            table: Some(c.table.replace("{stream}", stream)),
            tables: Vec::new(),
            query: None,
            stream: None,
            zero_dates: Default::default(),
        })),
        #[cfg(feature = "sqlite")]
        SinkConfig::Sqlite(c) => Some(SourceConfig::Sqlite(SqliteSourceConfig {
            path: c.path.clone(),
            table: Some(c.table.replace("{stream}", stream)),
            tables: Vec::new(),
            query: None,
            stream: None,
        })),
        #[cfg(feature = "search")]
        SinkConfig::Elasticsearch(c) | SinkConfig::Opensearch(c) => {
            let index = index_pattern(c.index.as_deref(), stream);
            let cfg = SearchSourceConfig {
                url: c.url.clone(),
                user: c.user.clone(),
                password: c.password.clone(),
                api_key: c.api_key.clone(),
                bearer: c.bearer.clone(),
                ca_cert: c.ca_cert.clone(),
                insecure: c.insecure,
                timeout_s: c.timeout_s,
                index: Some(index),
                indices: Vec::new(),
                query: None,
                stream: Some(stream.to_string()),
                slices: None,
                page_size: 1000,
                keep_alive: "5m".into(),
                paging: Default::default(),
            };
            Some(match sink {
                SinkConfig::Opensearch(_) => SourceConfig::Opensearch(cfg),
                _ => SourceConfig::Elasticsearch(cfg),
            })
        }
        _ => None,
    }
}

/// A connector as `sluice list` shows it.
pub struct ConnectorInfo {
    pub name: &'static str,
    pub role: &'static str,
    pub summary: &'static str,
    pub options: &'static [(&'static str, &'static str)],
}

const FILE_SOURCE_OPTIONS: &[(&str, &str)] = &[
    (
        "path",
        "path, glob (data/*.csv), s3:// gs:// az:// object, prefix/ or glob, or - for stdin; .gz and .zst are decompressed",
    ),
    (
        "format",
        "csv | json | ndjson | parquet | elasticdump | bulk | rally | raw (default: from the extension; elasticdump lines are recognised)",
    ),
    ("compression", "auto | none | gzip | zstd (default auto)"),
    ("stream", "stream name (default: the file stem)"),
    ("infer_rows", "records sampled to infer the schema (default 1000)"),
    (
        "schema.COLUMN",
        "declared type overriding inference, e.g. amount = \"decimal(12,2)\"",
    ),
    ("csv.header", "first line holds names (default true)"),
    ("csv.delimiter", "field separator (default , ; tab for .tsv)"),
    ("csv.quote", "quote character (default \")"),
    (
        "csv.escape",
        "escape character inside quotes (default none: quotes are doubled)",
    ),
    ("csv.null", "text meaning NULL, e.g. NA (default: empty field)"),
    ("csv.comment", "lines starting with this character are skipped"),
];

const FILE_SINK_OPTIONS: &[(&str, &str)] = &[
    (
        "path",
        "output path, s3:// gs:// az:// object, or - for stdout; {stream} is the stream name; .gz/.zst compress",
    ),
    (
        "format",
        "csv | json | ndjson | parquet | table | elasticdump | bulk | raw (default: from the extension; csv on stdout)",
    ),
    ("compression", "auto | none | gzip | zstd (default auto)"),
    ("csv.header / csv.delimiter / csv.quote", "CSV dialect of the output"),
    ("parquet_compression", "snappy | zstd | none (default snappy)"),
    ("row_group_rows", "rows per Parquet row group (default 122880)"),
    ("limit", "rows shown by the table format (default 50)"),
];

/// Every connector in this build.
pub fn catalog() -> Vec<ConnectorInfo> {
    let mut list = vec![
        ConnectorInfo {
            name: "file",
            role: "source",
            summary: "CSV, JSON, NDJSON, Parquet files, globs, stdin",
            options: FILE_SOURCE_OPTIONS,
        },
        ConnectorInfo {
            name: "file",
            role: "sink",
            summary: "CSV, JSON, NDJSON, Parquet files, stdout, preview table",
            options: FILE_SINK_OPTIONS,
        },
        ConnectorInfo {
            name: "null",
            role: "sink",
            summary: "discards rows, counts them (benchmarks, dry runs)",
            options: &[],
        },
    ];
    #[cfg(feature = "sqlite")]
    {
        list.push(ConnectorInfo {
            name: "sqlite",
            role: "source",
            summary: "tables or a query of a SQLite database",
            options: &[
                ("path", "database file"),
                (
                    "table / tables",
                    "table(s) to read, one stream each (default: all tables)",
                ),
                ("query", "a SELECT to read instead"),
                ("stream", "stream name for query (default query)"),
            ],
        });
        list.push(ConnectorInfo {
            name: "sqlite",
            role: "sink",
            summary: "tables created from the Arrow schema",
            options: &[
                ("path", "database file (created when missing)"),
                ("table", "table name; {stream} is the stream name (default {stream})"),
                (
                    "mode",
                    "new | append | replace | upsert (default new: refuses a table holding rows it did not write)",
                ),
                ("key", "key columns for upsert, primary key of created tables"),
            ],
        });
    }
    #[cfg(feature = "postgres")]
    {
        list.push(ConnectorInfo {
            name: "postgres",
            role: "source",
            summary: "tables or a query, binary COPY in parallel partitions of one snapshot",
            options: &[
                ("url", "postgres://user:password@host:port/database"),
                ("schema", "schema to read (default public)"),
                (
                    "table / tables",
                    "table(s) to read, one stream each (default: every table)",
                ),
                ("exclude", "tables to leave out of a whole-schema read"),
                ("query", "a SELECT to read instead"),
                ("stream", "stream name for query (default query)"),
                (
                    "cursor",
                    "incremental reads: column whose value only grows (updated_at)",
                ),
                ("cursor_start", "first value of cursor when there is no checkpoint"),
                (
                    "partitions",
                    "parallel partitions per table (default: 1 per 250k rows, at most 8)",
                ),
            ],
        });
        list.push(ConnectorInfo {
            name: "postgres",
            role: "sink",
            summary: "binary COPY; append, replace or upsert; tables, keys and indexes created",
            options: &[
                ("url", "postgres://user:password@host:port/database"),
                ("schema", "schema to write (default public)"),
                ("table", "table name; {stream} is the stream name (default {stream})"),
                (
                    "mode",
                    "new | append | replace | upsert (default new: refuses a table holding rows it did not write)",
                ),
                ("key", "upsert key (default: the source's primary key)"),
                ("create", "create missing tables (default true)"),
                (
                    "indexes",
                    "add keys, indexes, foreign keys after the load (default true)",
                ),
                (
                    "types.\"table.column\"",
                    "column type for created tables, e.g. \"numeric(12,2)\"",
                ),
            ],
        });
    }
    #[cfg(feature = "mysql")]
    {
        list.push(ConnectorInfo {
            name: "mysql",
            role: "source",
            summary: "MySQL/MariaDB tables (parallel key ranges) or a query (alias mariadb)",
            options: &[
                ("url", "mysql://user:password@host:3306/database"),
                (
                    "table / tables",
                    "table(s) to read, one stream each (default: every base table)",
                ),
                ("query", "a SELECT to read instead, as one stream"),
                ("stream", "stream name for query (default query)"),
                (
                    "zero_dates",
                    "null | reject: what 0000-00-00 dates become (default null, with a warning)",
                ),
            ],
        });
        list.push(ConnectorInfo {
            name: "mysql",
            role: "sink",
            summary: "MySQL/MariaDB tables, multi-row INSERT, bad rows isolated (alias mariadb)",
            options: &[
                ("url", "mysql://user:password@host:3306/database"),
                ("table", "table name; {stream} is the stream name (default {stream})"),
                (
                    "mode",
                    "new | append | replace | upsert (default new: refuses a table holding rows it did not write)",
                ),
                (
                    "key",
                    "upsert key, primary key of created tables (default: the source's)",
                ),
                ("create", "create missing tables (default true)"),
                (
                    "types.\"table.column\"",
                    "column type for created tables, e.g. \"decimal(14,2)\"",
                ),
            ],
        });
    }
    #[cfg(feature = "search")]
    {
        list.push(ConnectorInfo {
            name: "elasticsearch",
            role: "source",
            summary: "indexes read by point in time + search_after (scroll fallback) in parallel slices (alias opensearch, es)",
            options: &[
                ("url", "http://host:9200 (https:// for TLS; user:password@ for basic auth)"),
                ("user / password / api_key / bearer", "credentials"),
                ("ca_cert / insecure", "PEM file of a CA to trust / skip certificate checks"),
                ("index / indices", "index, alias or pattern to read, one stream each"),
                ("query", "query filter: a TOML table or JSON text of the search `query`"),
                ("slices", "parallel slices (default 1 per 250k documents, at most 8)"),
                ("page_size", "documents per page (default 1000)"),
                ("keep_alive", "point in time / scroll keep-alive (default 5m)"),
                ("paging", "auto | pit | scroll (default auto)"),
            ],
        });
        list.push(ConnectorInfo {
            name: "elasticsearch",
            role: "sink",
            summary: "_bulk with adaptive concurrency, item retries, dead letters (alias opensearch, es)",
            options: &[
                (
                    "url",
                    "http://host:9200 (https:// for TLS; user:password@ for basic auth)",
                ),
                ("user / password / api_key / bearer", "credentials"),
                (
                    "ca_cert / insecure",
                    "PEM file of a CA to trust / skip certificate checks",
                ),
                (
                    "index",
                    "index name or template, e.g. orders-{region} (default: _index column, else {stream})",
                ),
                (
                    "id",
                    "id column or template, e.g. {tenant}:{id} (default: _id column, else auto)",
                ),
                ("routing", "routing column or template (default: _routing column)"),
                (
                    "op",
                    "index | create | update | upsert | delete when there is no _op column (default index)",
                ),
                ("bulk_docs / bulk_bytes", "request caps (default 5000 docs, 10 MiB)"),
                (
                    "gzip",
                    "compress request bodies (default true, false for a cluster on loopback)",
                ),
                (
                    "concurrency",
                    "\"adaptive\" or a fixed number of requests (default adaptive)",
                ),
                ("max_concurrency", "upper bound of the adaptive limit (default 32)"),
                (
                    "max_retry_bytes",
                    "memory for documents awaiting a retry (default 64 MiB)",
                ),
                (
                    "create / mappings / mappings_file / settings",
                    "index creation, mappings first (default: the source index's)",
                ),
                (
                    "load_tuning",
                    "auto | always | never: refresh off, 0 replicas while loading (default auto: created indexes)",
                ),
                ("alias", "after a complete load, point this alias at the index"),
                (
                    "copy_aliases",
                    "give created indexes the source index's aliases (default true)",
                ),
            ],
        });
    }
    list
}

#[cfg(all(test, feature = "search"))]
mod tests {
    use super::index_pattern;

    #[test]
    fn templated_indexes_read_back_as_wildcards() {
        assert_eq!(index_pattern(None, "orders"), "orders");
        assert_eq!(index_pattern(Some("orders-{region}"), "x"), "orders-*");
        assert_eq!(index_pattern(Some("{stream}-{a}{b}-v2"), "logs"), "logs-*-v2");
        assert_eq!(index_pattern(Some("plain"), "s"), "plain");
    }
}
