//! The file source: CSV, JSON, NDJSON and Parquet from paths, globs or
//! standard input, one partition per file.

use std::io::{Cursor, Read};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// The most read from the first file when its first records are longer
/// than [`SAMPLE_BYTES`].
const MAX_SAMPLE_BYTES: usize = 64 << 20;

/// How long stdin may stay quiet before inference works with what it has.
const STDIN_QUIET: Duration = Duration::from_millis(500);

/// How often a reader of a quiet stdin wakes to hand over rows and look at cancellation.
const STDIN_POLL: Duration = Duration::from_millis(100);

/// Reads files of one format as one stream.
pub struct FileSource {
    inner: Arc<Inner>,
}

/// Standard input after inference: what it read, and the rest of the stream.
type SampledStdin = (Vec<u8>, Box<dyn Read + Send>);

struct Inner {
    cfg: FileSourceConfig,
    /// The configured format (or the extension's).
    format: Format,
    /// The format the content showed (elasticdump lines in a `.json` file).
    detected: std::sync::OnceLock<Format>,
    csv: CsvOptions,
    /// Standard input after inference.
    stdin: Mutex<Option<SampledStdin>>,
    /// `encoding`, resolved (`None`: UTF-8).
    encoding: Option<&'static encoding_rs::Encoding>,
}

impl FileSource {
    /// Checks the configuration; opens nothing.
    pub fn new(cfg: FileSourceConfig) -> Result<Self> {
        if std::path::Path::new(&cfg.path).is_dir() {
            return Err(Error::config(
                "source.path",
                format!(
                    "`{}` is a directory; name its files with a glob, such as {}/*.csv",
                    cfg.path,
                    cfg.path.trim_end_matches('/')
                ),
            ));
        }
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
        if format.docs().is_some()
            && !matches!(Format::from_path(&cfg.path), None | Some(Format::Json | Format::Ndjson))
        {
            return Err(Error::config(
                "source.format",
                format!(
                    "{} documents are JSON; `{}` does not look like a JSON file",
                    format.name(),
                    cfg.path
                ),
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
        let encoding = match &cfg.encoding {
            None => None,
            Some(_) if format == Format::Parquet => {
                return Err(Error::config(
                    "source.encoding",
                    "Parquet text is always UTF-8; remove encoding",
                ));
            }
            Some(label) => Some(super::encoding::lookup(label).map_err(|e| Error::config("source.encoding", e))?),
        };
        Ok(FileSource {
            inner: Arc::new(Inner {
                cfg,
                format,
                detected: std::sync::OnceLock::new(),
                csv,
                stdin: Mutex::new(None),
                encoding,
            }),
        })
    }
}

impl Inner {
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

    /// The format being read: the configured one, or what the content showed.
    fn format(&self) -> Format {
        self.detected.get().copied().unwrap_or(self.format)
    }

    fn frame_kind(&self) -> FrameKind {
        match self.format() {
            Format::Csv => FrameKind::Csv {
                delimiter: self.csv.delimiter as u8,
                quote: self.csv.quote as u8,
                escape: self.csv.escape.map(|c| c as u8),
            },
            Format::Ndjson => FrameKind::Lines,
            Format::Bulk => FrameKind::BulkPairs,
            // Documents come as lines or as an array; the array framer also
            // takes objects one after another, so it reads both.
            Format::Elasticdump | Format::Raw | Format::Rally
                if self.format == Format::Ndjson || Format::from_path(&self.cfg.path) == Some(Format::Ndjson) =>
            {
                FrameKind::Lines
            }
            _ => FrameKind::JsonArray,
        }
    }

    fn infer(&self, first: &str) -> Result<Schema> {
        if self.format == Format::Parquet {
            return parquet_schema(&Localized::new(first)?.path);
        }
        let sample = if first == "-" {
            let plain = self.cfg.compression.resolve("-") == super::config::Compression::None;
            let (sample, rest): (Vec<u8>, Box<dyn Read + Send>) = if plain {
                let mut pump = io::StdinPump::start(STDIN_POLL);
                let sample = pump
                    .sample(SAMPLE_BYTES, self.cfg.infer_rows + 1, STDIN_QUIET)
                    .map_err(|e| Error::io("stdin", e))?;
                (sample, Box::new(pump))
            } else {
                // A compressed stream cannot be cut into quiet pieces: wait for a full sample.
                let pump = io::StdinPump::start(Duration::from_secs(u32::MAX as u64));
                let mut rest = io::decompress(Box::new(pump), "-", self.cfg.compression)?;
                let sample = io::sample(&mut rest, SAMPLE_BYTES).map_err(|e| Error::io("stdin", e))?;
                (sample, rest)
            };
            let text = super::encoding::decode_sample(&sample, self.encoding).map_err(|e| Error::data("stdin", e))?;
            *self
                .stdin
                .lock()
                .map_err(|_| Error::Internal("stdin buffer poisoned".into()))? = Some((sample, rest));
            text
        } else {
            let mut input = self.open_text(first)?;
            let mut sample = io::sample(&mut input, SAMPLE_BYTES).map_err(|e| super::encoding::read_error(first, e))?;
            // A first record longer than the sample: read on until one is whole.
            let wanted = 1 + usize::from(self.format == Format::Csv && self.csv.header);
            while sample.len() >= SAMPLE_BYTES
                && sample.len() < MAX_SAMPLE_BYTES
                && super::framing::line_breaks(&sample, wanted) < wanted
            {
                let more = io::sample(&mut input, sample.len()).map_err(|e| super::encoding::read_error(first, e))?;
                if more.is_empty() {
                    break;
                }
                sample.extend(more);
            }
            sample
        };
        if self.format == Format::Csv
            && self.csv.header
            && super::framing::line_breaks(&sample, 2) < 2
            && sample.len() >= SAMPLE_BYTES
        {
            tracing::warn!(
                path = first,
                "no whole record in the first {} MiB: every column is read as text; declare types under [source.schema]",
                sample.len() >> 20
            );
        }
        if matches!(self.format, Format::Json | Format::Ndjson) && super::docs::looks_like_dump(&sample) {
            tracing::info!(
                path = first,
                "elasticdump documents (_id and _source on each line): read as documents"
            );
            let _ = self.detected.set(Format::Elasticdump);
        }
        if let Some(kind) = self.format().docs() {
            if !self.cfg.schema.is_empty() {
                return Err(Error::config(
                    "source.schema",
                    format!(
                        "{} documents have fixed columns (_index, _id, _routing, _source); remove [source.schema]",
                        self.format().name()
                    ),
                ));
            }
            return Ok(super::docs::schema(kind));
        }
        let inferred = match self.format {
            Format::Csv => csv::infer(&sample, &self.csv, self.cfg.infer_rows),
            _ => json::infer(&sample, self.frame_kind(), self.cfg.infer_rows),
        }
        .map_err(|e| {
            let hint = if e.to_ascii_lowercase().contains("utf") && self.encoding.is_none() {
                format!("; {}", super::encoding::HINT)
            } else {
                String::new()
            };
            Error::data(
                if first == "-" { "stdin" } else { first },
                format!("cannot infer a schema: {e}{hint}"),
            )
        })?;
        self.apply_declared(inferred, first)
    }

    /// Opens a file as UTF-8 text (decompressed and transcoded).
    fn open_text(&self, path: &str) -> Result<Box<dyn Read + Send>> {
        let input = io::open_read(path, self.cfg.compression)?;
        Ok(Box::new(super::encoding::Utf8Reader::new(input, self.encoding)))
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
        self.inner.format().name()
    }

    fn consumable(&self) -> bool {
        self.inner.cfg.path == "-"
    }

    async fn discover(&self) -> Result<Vec<StreamSpec>> {
        let this = &self.inner;
        let (files, sizes) = list_inputs(&this.cfg.path).await?;
        let first = files[0].clone();
        // Inference may wait on a pipe: keep it off the runtime so Ctrl-C is heard.
        let inner = self.inner.clone();
        let f = first.clone();
        let schema = tokio::task::spawn_blocking(move || inner.infer(&f))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        let partitions = files
            .iter()
            .zip(sizes)
            .map(|(f, size)| {
                let plain = this.cfg.compression.resolve(f) == super::config::Compression::None;
                let bytes = if f == "-" || !plain { None } else { size };
                PartitionSpec {
                    id: f.as_str().into(),
                    bounds: identity(f),
                    bytes,
                    rows: None,
                }
            })
            .collect();
        Ok(vec![StreamSpec {
            name: this.stream_name(&first).into(),
            schema: Arc::new(schema),
            partitions,
        }])
    }

    async fn read(&self, stream: &StreamSpec, partition: &PartitionSpec, ctx: ReadContext) -> Result<()> {
        let this = &self.inner;
        let path = partition.id.to_string();
        if let Some(p) = ctx.resume.as_ref().filter(|p| p.rows > 0) {
            if path == "-" {
                return Err(Error::config(
                    "source.path",
                    format!(
                        "standard input cannot be resumed ({} rows were delivered before the interruption); \
                         run with --fresh to start over",
                        p.rows
                    ),
                ));
            }
            // Resuming at a byte offset is only right in the same file.
            let now = identity(&path);
            if !partition.bounds.is_null() && now != partition.bounds {
                return Err(Error::config(
                    "source.path",
                    format!(
                        "{path} changed since the interrupted run (then {}, now {now}); resuming would skip or \
                         repeat rows, so run with --fresh to start over",
                        partition.bounds
                    ),
                ));
            }
        }
        let labels = Labels {
            stream: stream.name.clone(),
            origin: if path == "-" {
                "stdin".into()
            } else {
                partition.id.clone()
            },
            partition: partition.id.clone(),
            by: this.format().name().into(),
        };
        let schema = stream.schema.clone();
        if this.format == Format::Parquet {
            #[cfg(feature = "parquet")]
            return tokio::task::spawn_blocking(move || {
                let local = Localized::new(&path)?;
                super::parquet::read(&local.path, schema, labels, &ctx)
            })
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        }
        let mut input: Box<dyn Read + Send> = if path == "-" {
            let taken = this
                .stdin
                .lock()
                .map_err(|_| Error::Internal("stdin buffer poisoned".into()))?
                .take();
            match taken {
                Some((prefix, rest)) => Box::new(super::encoding::Utf8Reader::new(
                    Cursor::new(prefix).chain(rest),
                    this.encoding,
                )),
                None => return Err(Error::Internal("standard input was not sampled".into())),
            }
        } else {
            this.open_text(&path)?
        };
        let header = this.format == Format::Csv && this.csv.header;
        let inference = decode::Inference {
            rows: this.cfg.infer_rows,
            declared: this.cfg.schema.keys().cloned().collect(),
        };
        let decoder: Arc<dyn decode::RecordDecoder> = match (this.format(), this.format().docs()) {
            (_, Some(kind)) => Arc::new(super::docs::DocDecoder::new(kind)),
            (Format::Csv, None) => {
                csv::decoder(schema.clone(), &this.csv, inference).map_err(|e| Error::config("source.csv.null", e))?
            }
            (_, None) => json::decoder(schema.clone(), inference),
        };
        let framer = Framer::new(this.frame_kind(), usize::from(header));
        let csv_opts = this.csv.clone();
        tokio::task::spawn_blocking(move || {
            // Standard input is one partition: its header is the one inferred from.
            if header && path != "-" {
                input = check_header(input, &path, &schema, &csv_opts)?;
            }
            decode::run(input, framer, decoder, labels, &ctx)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
    }
}

/// The inputs a path names (files, or objects in a store), with their sizes.
async fn list_inputs(path: &str) -> Result<(Vec<String>, Vec<Option<u64>>)> {
    if io::is_object(path) {
        #[cfg(feature = "s3")]
        {
            let listed = super::objects::expand(path).await?;
            return Ok(listed.into_iter().map(|(u, n)| (u, Some(n))).unzip());
        }
        #[cfg(not(feature = "s3"))]
        return Err(io::no_object_store(path));
    }
    let files = io::expand(path)?;
    let sizes = files
        .iter()
        .map(|f| {
            if f == "-" {
                None
            } else {
                std::fs::metadata(f).ok().map(|m| m.len())
            }
        })
        .collect();
    Ok((files, sizes))
}

/// A local copy of a Parquet object (Parquet readers seek); local paths
/// are used as they are. The copy is removed when the guard drops.
struct Localized {
    path: String,
    staged: bool,
}

impl Localized {
    fn new(path: &str) -> Result<Localized> {
        if !io::is_object(path) {
            return Ok(Localized {
                path: path.to_string(),
                staged: false,
            });
        }
        #[cfg(feature = "s3")]
        {
            let local = super::objects::staging_path(path, ".parquet");
            super::objects::download(path, &local)?;
            Ok(Localized {
                path: local.to_string_lossy().into_owned(),
                staged: true,
            })
        }
        #[cfg(not(feature = "s3"))]
        Err(io::no_object_store(path))
    }
}

impl Drop for Localized {
    fn drop(&mut self) {
        if self.staged {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What identifies a file's content for a resumed read: its size and
/// modification time (`Null` for standard input or an unreadable path).
fn identity(path: &str) -> serde_json::Value {
    if path == "-" {
        return serde_json::Value::Null;
    }
    match std::fs::metadata(path) {
        Ok(m) => {
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos().to_string());
            serde_json::json!({ "size": m.len(), "mtime": mtime })
        }
        Err(_) => serde_json::Value::Null,
    }
}

/// Every file of a glob must have the columns of the first one.
fn check_header(
    mut input: Box<dyn Read + Send>,
    path: &str,
    schema: &SchemaRef,
    opts: &CsvOptions,
) -> Result<Box<dyn Read + Send>> {
    let head = io::sample(&mut input, 64 << 10).map_err(|e| super::encoding::read_error(path, e))?;
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
