//! The file source: CSV, JSON, NDJSON and Parquet from paths, globs or
//! standard input, one partition per file.

use std::io::{Cursor, Read};
use std::path::Path;
use std::sync::{Arc, Mutex};

use arrow::datatypes::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use sluice_core::types::parse_type;
use sluice_core::{Error, PartitionSpec, ReadContext, Result, Source, StreamSpec};

use super::config::{CsvOptions, FileSourceConfig, Format};
use super::decode::{self, Labels};
use super::framing::{FrameKind, Framer};
use super::{csv, io, json};

/// Bytes read from the start of the first file to infer a schema.
const SAMPLE_BYTES: usize = 4 << 20;

/// Reads files of one format as one stream.
pub struct FileSource {
    cfg: FileSourceConfig,
    format: Format,
    csv: CsvOptions,
    /// What inference read from standard input, replayed before the rest.
    stdin_prefix: Mutex<Option<Vec<u8>>>,
}

impl FileSource {
    /// Checks the configuration; opens nothing.
    pub fn new(cfg: FileSourceConfig) -> Result<Self> {
        let format = cfg.resolved_format().ok_or_else(|| {
            Error::config(
                "source.format",
                format!("cannot tell the format of `{}` from its extension; set format = \"csv\", \"json\", \"ndjson\" or \"parquet\"", cfg.path),
            )
        })?;
        if format == Format::Table {
            return Err(Error::config(
                "source.format",
                "`table` is an output format; read csv, json, ndjson or parquet",
            ));
        }
        if format == Format::Parquet && cfg.path == "-" {
            return Err(Error::config(
                "source.path",
                "Parquet cannot be read from standard input; write it to a file first",
            ));
        }
        if format != Format::Csv && cfg.csv != CsvOptions::default() {
            return Err(Error::config(
                "source.csv",
                format!(
                    "CSV options do not apply to {} input; remove [source.csv]",
                    format.name()
                ),
            ));
        }
        for (column, ty) in &cfg.schema {
            parse_type(ty).map_err(|e| Error::config(format!("source.schema.{column}"), e))?;
        }
        let mut csv = cfg.csv.clone();
        if csv.delimiter == ','
            && cfg
                .path
                .to_ascii_lowercase()
                .trim_end_matches(".gz")
                .trim_end_matches(".zst")
                .ends_with(".tsv")
        {
            csv.delimiter = '\t';
        }
        for (key, c) in [
            ("delimiter", Some(csv.delimiter)),
            ("quote", Some(csv.quote)),
            ("escape", csv.escape),
            ("comment", csv.comment),
        ] {
            if c.is_some_and(|c| !c.is_ascii()) {
                return Err(Error::config(
                    format!("source.csv.{key}"),
                    "must be a single ASCII character",
                ));
            }
        }
        Ok(FileSource {
            cfg,
            format,
            csv,
            stdin_prefix: Mutex::new(None),
        })
    }

    fn stream_name(&self, first: &str) -> String {
        if let Some(s) = &self.cfg.stream {
            return s.clone();
        }
        if first == "-" {
            return "stdin".into();
        }
        let name = Path::new(first)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| first.to_string());
        name.split('.')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("data")
            .to_string()
    }

    fn frame_kind(&self) -> FrameKind {
        match self.format {
            Format::Csv => FrameKind::Csv {
                quote: self.csv.quote as u8,
                escape: self.csv.escape.map(|c| c as u8),
            },
            Format::Ndjson => FrameKind::Lines,
            _ => FrameKind::JsonArray,
        }
    }

    fn infer(&self, first: &str) -> Result<Schema> {
        if self.format == Format::Parquet {
            return parquet_schema(first);
        }
        let mut input = io::open_read(first, self.cfg.compression)?;
        let sample = io::sample(&mut input, SAMPLE_BYTES).map_err(|e| Error::io(first, e))?;
        let inferred = match self.format {
            Format::Csv => csv::infer(&sample, &self.csv, self.cfg.infer_rows),
            _ => json::infer(&sample, self.frame_kind(), self.cfg.infer_rows),
        }
        .map_err(|e| Error::data(first, format!("cannot infer a schema: {e}")))?;
        if first == "-" {
            *self
                .stdin_prefix
                .lock()
                .map_err(|_| Error::Internal("stdin buffer poisoned".into()))? = Some(sample);
        }
        self.apply_declared(inferred, first)
    }

    /// Applies `[source.schema]` over the inferred schema.
    fn apply_declared(&self, inferred: Schema, first: &str) -> Result<Schema> {
        let mut fields: Vec<Field> = inferred.fields().iter().map(|f| f.as_ref().clone()).collect();
        for (column, ty) in &self.cfg.schema {
            let dt = parse_type(ty).map_err(|e| Error::config(format!("source.schema.{column}"), e))?;
            match fields.iter_mut().find(|f| f.name() == column) {
                Some(f) => *f = Field::new(column, dt, true),
                None if self.format == Format::Csv => {
                    let names: Vec<_> = fields.iter().map(|f| f.name().as_str()).collect();
                    return Err(Error::config(
                        format!("source.schema.{column}"),
                        format!(
                            "`{first}` has no column `{column}`; its columns are {}",
                            names.join(", ")
                        ),
                    ));
                }
                None => fields.push(Field::new(column, dt, true)),
            }
        }
        Ok(Schema::new(fields))
    }
}

fn parquet_schema(path: &str) -> Result<Schema> {
    #[cfg(feature = "parquet")]
    {
        super::parquet::schema(path)
    }
    #[cfg(not(feature = "parquet"))]
    {
        Err(Error::config(
            "source.format",
            format!("{path}: this build has no Parquet support (cargo feature `parquet`)"),
        ))
    }
}

#[async_trait]
impl Source for FileSource {
    fn name(&self) -> &str {
        self.format.name()
    }

    async fn discover(&self) -> Result<Vec<StreamSpec>> {
        let files = io::expand(&self.cfg.path)?;
        let first = files[0].clone();
        // Inference reads one sample of the first file; short enough to do inline.
        let schema = self.infer(&first)?;
        let partitions = files
            .iter()
            .map(|f| {
                let plain = self.cfg.compression.resolve(f) == super::config::Compression::None;
                let bytes = if f == "-" || !plain {
                    None
                } else {
                    std::fs::metadata(f).ok().map(|m| m.len())
                };
                PartitionSpec {
                    id: f.as_str().into(),
                    bytes,
                    rows: None,
                }
            })
            .collect();
        Ok(vec![StreamSpec {
            name: self.stream_name(&first).into(),
            schema: Arc::new(schema),
            partitions,
        }])
    }

    async fn read(&self, stream: &StreamSpec, partition: &PartitionSpec, ctx: ReadContext) -> Result<()> {
        let path = partition.id.to_string();
        let labels = Labels {
            stream: stream.name.clone(),
            origin: if path == "-" {
                "stdin".into()
            } else {
                partition.id.clone()
            },
            partition: partition.id.clone(),
            by: self.format.name().into(),
        };
        let schema = stream.schema.clone();
        if self.format == Format::Parquet {
            #[cfg(feature = "parquet")]
            return tokio::task::spawn_blocking(move || super::parquet::read(&path, schema, labels, &ctx))
                .await
                .map_err(|e| Error::Internal(e.to_string()))?;
        }
        let mut input = io::open_read(&path, self.cfg.compression)?;
        if path == "-" {
            let prefix = self
                .stdin_prefix
                .lock()
                .map_err(|_| Error::Internal("stdin buffer poisoned".into()))?
                .take();
            if let Some(prefix) = prefix {
                input = Box::new(Cursor::new(prefix).chain(input));
            }
        }
        let header = self.format == Format::Csv && self.csv.header;
        let decoder = match self.format {
            Format::Csv => csv::decoder(schema.clone(), &self.csv).map_err(|e| Error::config("source.csv.null", e))?,
            _ => json::decoder(schema.clone()),
        };
        let framer = Framer::new(self.frame_kind(), usize::from(header));
        let csv_opts = self.csv.clone();
        tokio::task::spawn_blocking(move || {
            if header {
                input = check_header(input, &path, &schema, &csv_opts)?;
            }
            decode::run(input, framer, decoder, labels, &ctx)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
    }
}

/// Every file of a glob must have the columns of the first one.
fn check_header(
    mut input: Box<dyn Read + Send>,
    path: &str,
    schema: &SchemaRef,
    opts: &CsvOptions,
) -> Result<Box<dyn Read + Send>> {
    let head = io::sample(&mut input, 64 << 10).map_err(|e| Error::io(path, e))?;
    let names = csv::header_of(&head, opts).map_err(|e| Error::data(path, e))?;
    let expected: Vec<&String> = schema.fields().iter().map(|f| f.name()).collect();
    // Declared-only JSON columns never occur here; CSV schemas come from headers.
    if names.len() != expected.len() || names.iter().zip(&expected).any(|(a, b)| a != *b) {
        return Err(Error::data(
            format!("{path}:1"),
            format!(
                "header has columns [{}] but the stream has [{}]; files of one stream must share their columns",
                names.join(", "),
                expected.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    Ok(Box::new(Cursor::new(head).chain(input)))
}
