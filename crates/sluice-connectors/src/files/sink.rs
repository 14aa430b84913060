//! The file sink: CSV, NDJSON, JSON, Parquet or a preview table, to a file
//! or standard output.
//!
//! Files are written to `PATH.part` and renamed to `PATH` when the stream
//! ends, also after an interrupted run, so every output file sluice leaves is
//! complete and valid (a Parquet footer is always written). Output therefore
//! becomes durable at `finish`, which is when its batches are acknowledged.
//!
//! A run that fails ([`Sink::fail`], or a write that failed) publishes
//! nothing: `PATH` keeps what it held, and the partial output stays in
//! `PATH.part`, which a warning names. A write the file refuses (a full
//! disk) is an I/O error naming the path, whatever encoder met it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use sluice_core::{Batch, Error, Rejection, Result, Sink, SinkConnector, StreamInfo};

use super::config::{FileSinkConfig, FileSourceConfig, Format};
use super::io::{Output, WriteFailure};

/// Writes each stream to a file (or standard output).
pub struct FileSink {
    cfg: FileSinkConfig,
    format: Format,
}

impl FileSink {
    /// Checks the configuration; creates nothing.
    pub fn new(cfg: FileSinkConfig) -> Result<Self> {
        if !cfg.path.contains("{stream}") && std::path::Path::new(&cfg.path).is_dir() {
            return Err(Error::config(
                "sinks.path",
                format!(
                    "`{}` is a directory; write one file per stream into it with path = \"{}/{{stream}}.ndjson\" \
                     (in `sluice copy`, end the destination with /), or name a file",
                    cfg.path,
                    cfg.path.trim_end_matches('/')
                ),
            ));
        }
        let format = cfg.resolved_format().ok_or_else(|| {
            Error::config(
                "sinks.format",
                format!("cannot tell the format of `{}` from its extension; set format = \"csv\", \"json\", \"ndjson\", \"parquet\" or \"table\"", cfg.path),
            )
        })?;
        if format == Format::Table && cfg.path != "-" {
            return Err(Error::config(
                "sinks.format",
                "the `table` format is for previews on standard output; set path = \"-\"",
            ));
        }
        #[cfg(not(feature = "parquet"))]
        if format == Format::Parquet {
            return Err(Error::config(
                "sinks.format",
                "this build has no Parquet support (cargo feature `parquet`)",
            ));
        }
        let mut cfg = cfg;
        if format == Format::Csv {
            let lower = cfg.path.to_ascii_lowercase();
            if cfg.csv.delimiter == ',' && lower.trim_end_matches(".gz").trim_end_matches(".zst").ends_with(".tsv") {
                cfg.csv.delimiter = '\t';
            }
            for (key, c) in [
                ("delimiter", Some(cfg.csv.delimiter)),
                ("quote", Some(cfg.csv.quote)),
                ("escape", cfg.csv.escape),
            ] {
                if c.is_some_and(|c| !c.is_ascii()) {
                    return Err(Error::config(
                        format!("sinks.csv.{key}"),
                        "must be a single ASCII character",
                    ));
                }
            }
            if cfg.csv.comment.is_some() {
                return Err(Error::config(
                    "sinks.csv.comment",
                    "comment lines are skipped when reading CSV; a CSV sink writes none, so remove csv.comment",
                ));
            }
        }
        Ok(FileSink { cfg, format })
    }

    fn path_for(&self, stream: &str) -> String {
        self.cfg.path.replace("{stream}", &file_name_for(stream))
    }
}

#[async_trait]
impl SinkConnector for FileSink {
    fn name(&self) -> &str {
        self.format.name()
    }

    fn target(&self, stream: &str) -> String {
        match self.path_for(stream).as_str() {
            "-" => "stdout".into(),
            p => p.into(),
        }
    }

    fn resources(&self) -> Vec<String> {
        match self.cfg.path.as_str() {
            "-" => Vec::new(),
            p => vec![p.to_string()],
        }
    }

    fn read_back(&self, stream: &str) -> Option<Result<Box<dyn sluice_core::Source>>> {
        // Parquet keeps the types, so its rows read back as they were
        // written; text formats would be inferred again and are not compared.
        if self.cfg.path == "-" || self.format != Format::Parquet {
            return None;
        }
        let cfg = FileSourceConfig {
            path: self.path_for(stream),
            format: Some(Format::Parquet),
            compression: Default::default(),
            stream: Some(stream.to_string()),
            infer_rows: 1000,
            schema: Default::default(),
            csv: Default::default(),
            encoding: None,
        };
        Some(super::FileSource::new(cfg).map(|s| Box::new(s) as Box<dyn sluice_core::Source>))
    }

    async fn open(&self, stream: &StreamInfo) -> Result<Box<dyn Sink>> {
        let path = self.path_for(&stream.name);
        if matches!(self.format, Format::Csv)
            && let Some(f) = stream.schema.fields().iter().find(|f| f.data_type().is_nested())
        {
            return Err(Error::config(
                "sinks.format",
                format!(
                    "CSV cannot hold the nested column `{}` ({}); write ndjson, json or parquet, or flatten it with a `set` or `sql` transform",
                    f.name(),
                    f.data_type()
                ),
            ));
        }
        let out = Output::create(&path, self.cfg.compression)?;
        let closed = out.closed_flag();
        let failure = out.failure();
        let part = out.part();
        let writer = match self.format {
            Format::Csv => {
                let mut builder = arrow::csv::WriterBuilder::new()
                    .with_header(self.cfg.csv.header)
                    .with_delimiter(self.cfg.csv.delimiter as u8)
                    .with_quote(self.cfg.csv.quote as u8);
                if let Some(null) = &self.cfg.csv.null {
                    builder = builder.with_null(null.clone());
                }
                if let Some(escape) = self.cfg.csv.escape {
                    builder = builder.with_escape(escape as u8).with_double_quote(false);
                }
                Writer::Csv(builder.build(out))
            }
            // Documents (a `_source` column) are written as elasticdump
            // lines, so the file reads back as the same documents.
            Format::Ndjson if has_source(&stream.schema) => Writer::Docs(out, super::docs::DocKind::Dump),
            Format::Elasticdump => Writer::Docs(out, super::docs::DocKind::Dump),
            Format::Bulk => Writer::Docs(out, super::docs::DocKind::Bulk),
            Format::Raw => Writer::Docs(out, super::docs::DocKind::Raw),
            Format::Rally => {
                return Err(Error::config(
                    "sinks.format",
                    "rally is an input format; write elasticdump, bulk, raw or ndjson",
                ));
            }
            Format::Ndjson => Writer::Ndjson(json_writer().build(out)),
            Format::Json => Writer::Json(json_writer().build(out), false),
            #[cfg(feature = "parquet")]
            Format::Parquet => Writer::Parquet(super::parquet::ParquetWriter::new(
                out,
                stream.schema.clone(),
                self.cfg.parquet_compression,
                self.cfg.row_group_rows,
            )?),
            #[cfg(not(feature = "parquet"))]
            Format::Parquet => return Err(Error::config("sinks.format", "this build has no Parquet support")),
            Format::Table => Writer::Table {
                out,
                shown: Vec::new(),
                total: 0,
                limit: self.cfg.limit,
                schema: stream.schema.clone(),
            },
        };
        Ok(Box::new(FileStreamSink {
            writer: Some(writer),
            path,
            closed,
            failure,
            part,
            broken: false,
        }))
    }
}

/// A stream name made safe as one file name: path separators, NUL and
/// control characters become `_`, and a leading `.` gets a `_` before it, so
/// a table named `../../x` is written as `_.._.._x` inside the destination.
pub(crate) fn file_name_for(stream: &str) -> String {
    let mut name: String = stream
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if name.is_empty() || name.starts_with('.') {
        name.insert(0, '_');
    }
    name
}

/// JSON output keeps non-finite floats (as `"NaN"`, `"Infinity"`, `"-Infinity"`).
fn json_writer() -> arrow::json::WriterBuilder {
    arrow::json::WriterBuilder::new().with_encoder_factory(Arc::new(super::json::NonFiniteAsText))
}

/// Whether rows are search documents: a `_source` column of JSON text.
fn has_source(schema: &SchemaRef) -> bool {
    schema
        .field_with_name("_source")
        .is_ok_and(|f| matches!(f.data_type(), arrow::datatypes::DataType::Utf8))
}

// One writer per stream, created once and never moved on a hot path: the
// size difference between variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum Writer {
    Csv(arrow::csv::Writer<Output>),
    Ndjson(arrow::json::LineDelimitedWriter<Output>),
    /// Search documents (dump, bulk or raw lines).
    Docs(Output, super::docs::DocKind),
    /// The flag says whether any row was written.
    Json(arrow::json::ArrayWriter<Output>, bool),
    #[cfg(feature = "parquet")]
    Parquet(super::parquet::ParquetWriter),
    Table {
        out: Output,
        shown: Vec<RecordBatch>,
        total: usize,
        limit: usize,
        schema: SchemaRef,
    },
}

struct FileStreamSink {
    writer: Option<Writer>,
    path: String,
    /// Standard output's reader went away: stop, it is not a failure.
    closed: Arc<AtomicBool>,
    /// The first error the output file gave.
    failure: WriteFailure,
    /// Where the output is written before it is published.
    part: Option<PathBuf>,
    /// A write failed: the output is not valid and is never published.
    broken: bool,
}

impl FileStreamSink {
    /// `e`, or the I/O error under it when the file refused a write (an
    /// encoder reports a full disk as its own kind of error).
    fn classify(&self, e: Error) -> Error {
        let failed = self.failure.lock().ok().and_then(|f| f.clone());
        match failed {
            Some((kind, message)) if !matches!(e, Error::Io { .. }) => {
                let part = self.part.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
                Error::io(
                    &self.path,
                    std::io::Error::new(kind, format!("{message} (while writing {part})")),
                )
            }
            _ => e,
        }
    }

    /// Drops what was written without publishing it: `PATH` keeps what it
    /// held, and the warning says where the partial output is.
    fn abandon(&mut self) {
        if self.writer.take().is_some() {
            self.name_partial();
        }
    }

    /// Says that `PATH` was left as it was and where the partial output is.
    fn name_partial(&self) {
        if let Some(part) = self.part.as_ref().filter(|p| p.exists()) {
            tracing::warn!(
                path = %self.path,
                partial = %part.display(),
                "the run failed, so {} was left as it was; the partial output is in {}",
                self.path,
                part.display()
            );
        }
    }

    fn write_sync(&mut self, data: &RecordBatch) -> Result<()> {
        let path = &self.path;
        let fail = |e: arrow::error::ArrowError| Error::data(path.clone(), e.to_string());
        match self.writer.as_mut() {
            Some(Writer::Csv(w)) => w.write(data).map_err(fail),
            Some(Writer::Ndjson(w)) => w.write(data).map_err(fail),
            Some(Writer::Docs(out, kind)) => super::docs::write_docs(out, *kind, data).map_err(|e| Error::io(path, e)),
            Some(Writer::Json(w, any)) => {
                *any |= data.num_rows() > 0;
                w.write(data).map_err(fail)
            }
            #[cfg(feature = "parquet")]
            Some(Writer::Parquet(w)) => w.write(data, path),
            Some(Writer::Table {
                shown, total, limit, ..
            }) => {
                let have: usize = shown.iter().map(|b| b.num_rows()).sum();
                if have < *limit {
                    shown.push(data.slice(0, (*limit - have).min(data.num_rows())));
                }
                *total += data.num_rows();
                Ok(())
            }
            None => Err(Error::Internal(format!("{path}: write after finish"))),
        }
    }

    fn finish_sync(&mut self) -> Result<()> {
        let path = self.path.clone();
        let fail = |e: arrow::error::ArrowError| Error::data(path.clone(), e.to_string());
        let out = match self.writer.take() {
            Some(Writer::Csv(w)) => w.into_inner(),
            Some(Writer::Docs(out, _)) => out,
            Some(Writer::Ndjson(mut w)) => {
                w.finish().map_err(fail)?;
                w.into_inner()
            }
            Some(Writer::Json(mut w, any)) => {
                w.finish().map_err(fail)?;
                let mut out = w.into_inner();
                if !any {
                    std::io::Write::write_all(&mut out, b"[]").map_err(|e| Error::io(&path, e))?;
                }
                std::io::Write::write_all(&mut out, b"\n").map_err(|e| Error::io(&path, e))?;
                out
            }
            #[cfg(feature = "parquet")]
            Some(Writer::Parquet(w)) => w.close(&path)?,
            Some(Writer::Table {
                mut out,
                shown,
                total,
                schema,
                ..
            }) => {
                let table = if shown.is_empty() {
                    arrow::util::pretty::pretty_format_batches(&[RecordBatch::new_empty(schema)])
                } else {
                    arrow::util::pretty::pretty_format_batches(&shown)
                }
                .map_err(fail)?;
                let listed: usize = shown.iter().map(|b| b.num_rows()).sum();
                let note = if listed < total {
                    format!("({listed} of {total} rows shown)\n")
                } else {
                    format!("({total} rows)\n")
                };
                std::io::Write::write_all(&mut out, format!("{table}\n{note}").as_bytes())
                    .map_err(|e| Error::io(&path, e))?;
                out
            }
            None => return Ok(()),
        };
        out.finish()
    }
}

#[async_trait]
impl Sink for FileStreamSink {
    async fn write(&mut self, batch: &Batch) -> Result<Vec<Rejection>> {
        if let Err(e) = sluice_core::blocking(|| self.write_sync(&batch.data)) {
            self.broken = true;
            return Err(self.classify(e));
        }
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::OutputClosed);
        }
        Ok(Vec::new())
    }

    async fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    fn durable_on_flush(&self) -> bool {
        false
    }

    /// Publishes the output, whole or, after an interruption, shorter but
    /// valid; never after a failed write.
    async fn finish(&mut self, _complete: bool) -> Result<()> {
        if self.broken {
            self.abandon();
            return Ok(());
        }
        let finished = sluice_core::blocking(|| self.finish_sync());
        if finished.is_err() {
            self.name_partial();
        }
        finished.map_err(|e| self.classify(e))
    }

    async fn fail(&mut self) -> Result<()> {
        self.abandon();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_cannot_leave_the_destination() {
        assert_eq!(file_name_for("../../x"), "_.._.._x");
        assert_eq!(file_name_for(".."), "_..");
        assert_eq!(file_name_for("a\\b/c\n"), "a_b_c_");
        assert_eq!(file_name_for(""), "_");
        assert_eq!(file_name_for("public.orders"), "public.orders");
        let sink = FileSink::new(FileSinkConfig {
            path: "out/{stream}.ndjson".into(),
            format: None,
            compression: Default::default(),
            csv: Default::default(),
            parquet_compression: Default::default(),
            row_group_rows: 10,
            limit: 10,
        })
        .unwrap();
        let path = std::path::PathBuf::from(sink.path_for("../../etc/passwd"));
        assert_eq!(path.parent(), Some(std::path::Path::new("out")));
    }
}
