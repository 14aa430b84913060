//! Looking at a pipeline without running it: `check` (connections and
//! permissions), `plan` (streams, estimates, DDL, plan hash) and `verify`
//! (row counts and order-independent checksums, source against target).

use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use sluice_core::dbmeta::{ColumnMeta, Semantic, TableMeta};
use sluice_core::{Error, ReadContext, Result, SinkConnector, Source, SourceEvent, StreamInfo, StreamSpec};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Pipeline, fnv1a};

/// One stream as `sluice plan` shows it.
#[derive(Debug, Clone)]
pub struct PlannedStream {
    pub name: String,
    pub partitions: usize,
    pub estimated_rows: Option<u64>,
    /// Columns reaching the sinks: name and type.
    pub columns: Vec<(String, String)>,
    /// Per sink: where it writes and the statements it would run.
    pub sinks: Vec<(String, Vec<String>)>,
}

/// What a run of the pipeline would do.
#[derive(Debug, Clone)]
pub struct PlanReport {
    pub streams: Vec<PlannedStream>,
    /// The pipeline's plan hash ([`Pipeline::plan_hash`]): the one
    /// `validate` prints and a run compares before it resumes.
    pub plan_hash: String,
    /// Hash of the plan hash, the streams' discovered schemas and the DDL:
    /// the same pipeline against the same databases always gives the same
    /// one, and a changed source table changes it.
    pub schema_hash: String,
    /// Objects of the source database no stream carries (views, triggers,
    /// routines, events).
    pub not_copied: Vec<sluice_core::NotCopied>,
}

/// A pipeline's source and sinks, built but not connected.
type Connectors = (Arc<dyn Source>, Vec<Arc<dyn SinkConnector>>);

fn build(p: &Pipeline) -> Result<Connectors> {
    let source: Arc<dyn Source> = Arc::from(p.build_source()?);
    let sinks = p.build_sinks()?.into_iter().map(Arc::from).collect();
    Ok((source, sinks))
}

/// The schema a stream has after the transform chain.
fn output_schema(p: &Pipeline, spec: &StreamSpec) -> Result<SchemaRef> {
    let mut schema = spec.schema.clone();
    for f in sluice_transforms::build(&p.config.transforms)? {
        schema = f.plan(&spec.name, schema)?.output_schema();
    }
    Ok(schema)
}

/// Plans every stream: connects to read catalogs, writes nothing.
pub async fn plan(p: &Pipeline) -> Result<PlanReport> {
    let (source, sinks) = build(p)?;
    let specs = source.discover().await?;
    let mut streams = Vec::new();
    let mut hash_input = p.plan_hash.clone();
    for spec in &specs {
        let schema = output_schema(p, spec)?;
        let info = StreamInfo::new(spec.name.clone(), schema.clone(), &p.name);
        let mut planned_sinks = Vec::new();
        for s in &sinks {
            planned_sinks.push((s.target(&spec.name), s.plan(&info).await?));
        }
        let columns: Vec<(String, String)> = schema
            .fields()
            .iter()
            .map(|f| {
                let db = ColumnMeta::of(f).db_type.map(|t| format!(" ({t})")).unwrap_or_default();
                (
                    f.name().clone(),
                    format!("{}{db}", sluice_core::types::arrow_type_name(f.data_type())),
                )
            })
            .collect();
        hash_input.push_str(&format!("\n{}:{:?}:{:?}", spec.name, columns, planned_sinks));
        let estimated_rows = spec
            .total_rows()
            .or_else(|| TableMeta::of(&spec.schema).and_then(|m| m.estimated_rows));
        streams.push(PlannedStream {
            name: spec.name.to_string(),
            partitions: spec.partitions.len(),
            estimated_rows,
            columns,
            sinks: planned_sinks,
        });
    }
    Ok(PlanReport {
        streams,
        not_copied: source.not_copied().await?,
        plan_hash: p.plan_hash.clone(),
        schema_hash: format!("{:016x}", fnv1a(hash_input.as_bytes())),
    })
}

/// Tests the source and every sink: connections, then permissions. Returns
/// (role, line) for everything that passed; the first failure is the error.
pub async fn check(p: &Pipeline) -> Result<Vec<(String, String)>> {
    let (source, sinks) = build(p)?;
    let specs = source.discover().await?;
    let mut lines = vec![(
        format!("source {}", source.name()),
        format!("{} stream(s) found", specs.len()),
    )];
    for l in source.check(&specs).await? {
        lines.push((format!("source {}", source.name()), l));
    }
    let mut infos = Vec::new();
    for spec in &specs {
        infos.push(StreamInfo::new(spec.name.clone(), output_schema(p, spec)?, &p.name));
    }
    for (i, s) in sinks.iter().enumerate() {
        let role = format!("sinks[{i}] {}", s.name());
        // Planning the DDL also proves every column has a destination type.
        for info in &infos {
            s.plan(info).await?;
        }
        let checked = s.check(&infos).await?;
        if checked.is_empty() {
            lines.push((role, "nothing to check before writing".into()));
        }
        for l in checked {
            lines.push((format!("sinks[{i}] {}", s.name()), l));
        }
    }
    Ok(lines)
}

/// Counts and checksum of one side of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fingerprint {
    pub rows: u64,
    /// Wrapping sum of row hashes: independent of row order.
    pub checksum: u64,
}

/// One line of `sluice verify`.
#[derive(Debug, Clone)]
pub struct VerifyLine {
    pub stream: String,
    pub sink: String,
    pub source: Fingerprint,
    pub target: Option<Fingerprint>,
    /// Why the target could not be read, if it could not.
    pub note: Option<String>,
    /// False for a sink that cannot be read back (stdout, CSV and JSON
    /// files, the null sink): shown as not compared, never a difference.
    pub compared: bool,
    /// Columns the source has and the target lacks: a difference.
    pub missing_columns: Vec<String>,
}

impl VerifyLine {
    pub fn matches(&self) -> bool {
        !self.compared || (self.target == Some(self.source) && self.missing_columns.is_empty())
    }
}

/// Reads every stream from the source (through the transforms) and from each
/// sink's destination, and compares row counts and checksums over the
/// columns both sides have.
///
/// Search-engine destinations are compared document by document: every
/// `_id` with a hash of its `_source` (canonical JSON, so key order and
/// number spelling do not matter), or a deterministic sample of about
/// `sample` documents (chosen by a hash of the id, the same on both sides).
pub async fn verify(p: &Pipeline, cancel: CancellationToken) -> Result<Vec<VerifyLine>> {
    verify_sampled(p, None, cancel).await
}

/// [`verify`], comparing only about `sample` documents of search indexes.
pub async fn verify_sampled(p: &Pipeline, sample: Option<u64>, cancel: CancellationToken) -> Result<Vec<VerifyLine>> {
    let (source, sinks) = build(p)?;
    let specs = source.discover().await?;
    let mut lines = Vec::new();
    for spec in &specs {
        let expected_schema = output_schema(p, spec)?;
        for (i, sink) in sinks.iter().enumerate() {
            let sink_name = format!("sinks[{i}]");
            let Some(target_source) = sink.read_back(&spec.name) else {
                lines.push(VerifyLine {
                    stream: spec.name.to_string(),
                    sink: sink_name,
                    source: Fingerprint::default(),
                    target: None,
                    note: Some(format!("{} sinks cannot be read back", sink.name())),
                    compared: false,
                    missing_columns: Vec::new(),
                });
                continue;
            };
            let target_source = target_source?;
            // A target that is not there (no table, no file) is a difference;
            // a destination that cannot be reached is an error.
            let missing_target = |why: String| VerifyLine {
                stream: spec.name.to_string(),
                sink: sink_name.clone(),
                source: Fingerprint::default(),
                target: None,
                note: Some(format!("target missing: {why}")),
                compared: true,
                missing_columns: Vec::new(),
            };
            let target_specs = match target_source.discover().await {
                Ok(specs) => specs,
                Err(e @ (Error::Config { .. } | Error::Io { .. })) => {
                    lines.push(missing_target(e.to_string()));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some(target_spec) = target_specs.first() else {
                lines.push(missing_target("nothing to read".into()));
                continue;
            };
            if sink.holds_documents() {
                lines.push(
                    verify_documents(
                        p,
                        &source,
                        spec,
                        target_source,
                        target_spec,
                        sample,
                        sink.as_ref(),
                        &sink_name,
                        &cancel,
                    )
                    .await?,
                );
                continue;
            }
            // Compare the columns both sides have, in the source's order,
            // under the names the sink gave them.
            let dest = |n: &String| sink.destination_column(&spec.name, n);
            let shared: Vec<String> = expected_schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .filter(|n| target_spec.schema.field_with_name(&dest(n)).is_ok())
                .collect();
            let shared_there: Vec<String> = shared.iter().map(dest).collect();
            // Fixed-length text on either side: trailing blanks are padding.
            let padded: Vec<bool> = shared
                .iter()
                .zip(&shared_there)
                .map(|(here, there)| {
                    expected_schema
                        .field_with_name(here)
                        .is_ok_and(sluice_core::dbmeta::blank_padded)
                        || target_spec
                            .schema
                            .field_with_name(there)
                            .is_ok_and(sluice_core::dbmeta::blank_padded)
                })
                .collect();
            let source_fp = fingerprint(p, &source, spec, &shared, &padded, true, &cancel).await?;
            let target_fp = fingerprint(
                p,
                &Arc::from(target_source),
                target_spec,
                &shared_there,
                &padded,
                false,
                &cancel,
            )
            .await?;
            let missing: Vec<String> = expected_schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .filter(|n| !shared.contains(n))
                .collect();
            lines.push(VerifyLine {
                stream: spec.name.to_string(),
                sink: sink_name,
                source: source_fp,
                target: Some(target_fp),
                note: (!missing.is_empty()).then(|| format!("target lacks column(s) {}", missing.join(", "))),
                compared: true,
                missing_columns: missing,
            });
        }
    }
    Ok(lines)
}

/// Computes the document id of each row of a batch, for search sinks.
type RowIds<'a> = dyn Fn(&RecordBatch) -> Option<Result<Vec<Option<String>>>> + 'a;

/// Documents of one side: how many, and the hash of each sampled one by id.
struct Documents {
    count: u64,
    hashes: HashMap<String, u64>,
}

/// Compares a stream with the search index it was written to, by `_id`.
#[allow(clippy::too_many_arguments)]
async fn verify_documents(
    p: &Pipeline,
    source: &Arc<dyn Source>,
    spec: &StreamSpec,
    target_source: Box<dyn Source>,
    target_spec: &StreamSpec,
    sample: Option<u64>,
    sink: &dyn SinkConnector,
    sink_name: &str,
    cancel: &CancellationToken,
) -> Result<VerifyLine> {
    let expected = spec.total_rows().or(target_spec.total_rows()).unwrap_or(0).max(1);
    // Keep ids whose hash falls under this bound: about `sample` of them.
    let bound = match sample {
        Some(n) if n < expected => ((n as f64 / expected as f64) * u64::MAX as f64) as u64,
        _ => u64::MAX,
    };
    // Source rows get their ids the way the sink gives them (an `_id`
    // column, an `id` column or template); the index has them in `_id`.
    let ids = |data: &RecordBatch| sink.document_ids(&spec.name, data);
    let src = documents(p, source, spec, true, bound, Some(&ids), cancel).await?;
    let dst = documents(p, &Arc::from(target_source), target_spec, false, bound, None, cancel).await?;
    let mut missing = Vec::new();
    let mut changed = Vec::new();
    for (id, h) in &src.hashes {
        match dst.hashes.get(id) {
            None => missing.push(id.as_str()),
            Some(t) if t != h => changed.push(id.as_str()),
            _ => {}
        }
    }
    let extra = dst.hashes.keys().filter(|id| !src.hashes.contains_key(*id)).count();
    missing.sort();
    changed.sort();
    let sum = |d: &Documents| d.hashes.values().fold(0u64, |a, h| a.wrapping_add(*h));
    let mut notes = vec![format!(
        "{} of {} documents compared by _id and _source",
        src.hashes.len(),
        src.count
    )];
    let show = |ids: &[&str]| ids.iter().take(5).copied().collect::<Vec<_>>().join(", ");
    if !missing.is_empty() {
        notes.push(format!("{} missing ({})", missing.len(), show(&missing)));
    }
    if !changed.is_empty() {
        notes.push(format!("{} different ({})", changed.len(), show(&changed)));
    }
    if extra > 0 {
        notes.push(format!("{extra} only in the target"));
    }
    Ok(VerifyLine {
        stream: spec.name.to_string(),
        sink: sink_name.to_string(),
        source: Fingerprint {
            rows: src.count,
            checksum: sum(&src),
        },
        target: Some(Fingerprint {
            rows: dst.count,
            checksum: if missing.is_empty() && changed.is_empty() && extra == 0 {
                sum(&src)
            } else {
                sum(&dst) ^ 1
            },
        }),
        note: Some(notes.join("; ")),
        compared: true,
        missing_columns: Vec::new(),
    })
}

/// Reads a stream of documents (`_id` and `_source`, or plain rows whose
/// columns make the document) and hashes the sampled ones.
async fn documents(
    p: &Pipeline,
    source: &Arc<dyn Source>,
    spec: &StreamSpec,
    transform: bool,
    bound: u64,
    ids: Option<&RowIds<'_>>,
    cancel: &CancellationToken,
) -> Result<Documents> {
    let mut docs = Documents {
        count: 0,
        hashes: HashMap::new(),
    };
    let id_of = |s: &str| {
        let mut h = std::hash::DefaultHasher::new();
        h.write(s.as_bytes());
        h.finish()
    };
    let mut add = |data: &RecordBatch| -> Result<()> {
        let text = |name: &str| sluice_core::documents::text_column(data, name);
        let row_ids: Vec<Option<String>> = match ids.and_then(|f| f(data)) {
            Some(computed) => computed?,
            None => match text("_id")? {
                Some(a) => (0..a.len())
                    .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
                    .collect(),
                None => vec![None; data.num_rows()],
            },
        };
        let sources = text("_source")?;
        let built = match &sources {
            Some(_) => None,
            None => Some(sluice_core::documents::row_documents(data)?),
        };
        for row in 0..data.num_rows() {
            docs.count += 1;
            let Some(id) = row_ids[row].as_deref() else {
                continue;
            };
            if id_of(id) > bound {
                continue;
            }
            let text: std::borrow::Cow<'_, str> = match (&sources, &built) {
                (Some(s), _) if s.is_valid(row) => s.value(row).into(),
                (_, Some(b)) => String::from_utf8_lossy(&b[row]),
                _ => "null".into(),
            };
            // serde_json sorts keys and spells numbers one way: a canonical form.
            let canonical = serde_json::from_str::<serde_json::Value>(&text)
                .map(|v| v.to_string())
                .unwrap_or_else(|_| text.into_owned());
            docs.hashes.insert(id.to_string(), id_of(&canonical));
        }
        Ok(())
    };
    read_all(p, source, spec, transform, cancel, &mut add).await?;
    Ok(docs)
}

/// Reads a stream fully and fingerprints the `columns`; trailing blanks of
/// the `padded` ones are left out.
async fn fingerprint(
    p: &Pipeline,
    source: &Arc<dyn Source>,
    spec: &StreamSpec,
    columns: &[String],
    padded: &[bool],
    transform: bool,
    cancel: &CancellationToken,
) -> Result<Fingerprint> {
    let mut fp = Fingerprint::default();
    let mut add = |data: &RecordBatch| -> Result<()> {
        let idx: Vec<usize> = columns
            .iter()
            .map(|c| data.schema().index_of(c))
            .collect::<std::result::Result<_, _>>()?;
        let arrays: Vec<(ArrayRef, bool, bool)> = idx
            .iter()
            .map(|i| {
                let f = data.schema().field(*i).clone();
                (
                    data.column(*i).clone(),
                    ColumnMeta::of(&f).semantic == Some(Semantic::Json),
                    sluice_core::spatial::GeometryMeta::of(&f).is_some(),
                )
            })
            .collect();
        for row in 0..data.num_rows() {
            let mut h = std::hash::DefaultHasher::new();
            let mut cell_text = String::new();
            for ((a, json, geometry), pad) in arrays.iter().zip(padded) {
                cell_text.clear();
                if !(*geometry && geometry_cell(a, row, &mut cell_text)) {
                    cell(a, row, *json, &mut cell_text)?;
                }
                if *pad {
                    cell_text.truncate(cell_text.trim_end_matches(' ').len());
                }
                h.write(cell_text.as_bytes());
                h.write_u8(0x1f);
            }
            fp.checksum = fp.checksum.wrapping_add(h.finish());
            fp.rows += 1;
        }
        Ok(())
    };
    read_all(p, source, spec, transform, cancel, &mut add).await?;
    Ok(fp)
}

/// Reads a stream fully (through the transforms when `transform`), handing
/// every batch to `add`.
async fn read_all(
    p: &Pipeline,
    source: &Arc<dyn Source>,
    spec: &StreamSpec,
    transform: bool,
    cancel: &CancellationToken,
    add: &mut dyn FnMut(&RecordBatch) -> Result<()>,
) -> Result<()> {
    let (tx, mut rx) = mpsc::channel::<SourceEvent>(8);
    let limits = p.config.runtime.limits();
    let threads = p.config.runtime.threads();
    let reader = {
        let (source, spec, cancel) = (source.clone(), spec.clone(), cancel.clone());
        tokio::spawn(async move {
            for partition in &spec.partitions {
                let ctx = ReadContext {
                    out: tx.clone(),
                    cancel: cancel.clone(),
                    limits,
                    resume: None,
                    parallelism: threads,
                    payload: None,
                };
                source.read(&spec, partition, ctx).await?;
            }
            Ok::<_, Error>(())
        })
    };
    let mut chain = Vec::new();
    if transform {
        // Each transform is planned for what the one before it puts out.
        let mut schema = spec.schema.clone();
        for f in sluice_transforms::build(&p.config.transforms)? {
            let t = f.plan(&spec.name, schema)?;
            schema = t.output_schema();
            chain.push(t);
        }
    }
    while let Some(ev) = rx.recv().await {
        let SourceEvent::Batch(batch) = ev else { continue };
        if let Some(b) = through(&mut chain, batch).await? {
            add(&b.data)?;
        }
    }
    for i in 0..chain.len() {
        if let Some(b) = chain[i].finish().await?.batch
            && let Some(b) = through(&mut chain[i + 1..], b).await?
        {
            add(&b.data)?;
        }
    }
    reader
        .await
        .map_err(|e| Error::Internal(format!("verify reader: {e}")))??;
    Ok(())
}

/// Passes a batch through a transform chain; None when a transform holds it back.
async fn through(
    chain: &mut [Box<dyn sluice_core::Transform>],
    mut batch: sluice_core::Batch,
) -> Result<Option<sluice_core::Batch>> {
    for t in chain.iter_mut() {
        match t.apply(batch).await?.batch {
            Some(b) => batch = b,
            None => return Ok(None),
        }
    }
    Ok(Some(batch))
}

/// A spatial value as EWKT, the form every destination can hold it in
/// (PostGIS and MySQL geometry, WKT text); false when it is not EWKB.
fn geometry_cell(a: &ArrayRef, row: usize, out: &mut String) -> bool {
    if a.is_null(row) || a.data_type() != &DataType::Binary {
        return false;
    }
    match sluice_core::spatial::ewkb_to_ewkt(a.as_binary::<i32>().value(row)) {
        Ok(text) => {
            out.push_str(&text);
            true
        }
        Err(_) => false,
    }
}

/// A value in a form both sides of a migration agree on: integers of any
/// width as digits, booleans as 1/0, times as microseconds, bytes as hex,
/// JSON re-serialized with sorted keys.
fn cell(a: &ArrayRef, row: usize, json: bool, out: &mut String) -> Result<()> {
    use std::fmt::Write;
    if a.is_null(row) {
        out.push('\u{2205}');
        return Ok(());
    }
    match a.data_type() {
        DataType::Boolean => out.push(if a.as_boolean().value(row) { '1' } else { '0' }),
        DataType::Timestamp(unit, _) => {
            let raw = match unit {
                TimeUnit::Second => a.as_primitive::<arrow::datatypes::TimestampSecondType>().value(row) * 1_000_000,
                TimeUnit::Millisecond => {
                    a.as_primitive::<arrow::datatypes::TimestampMillisecondType>()
                        .value(row)
                        * 1000
                }
                TimeUnit::Microsecond => a
                    .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                    .value(row),
                TimeUnit::Nanosecond => a.as_primitive::<arrow::datatypes::TimestampNanosecondType>().value(row) / 1000,
            };
            let _ = write!(out, "{raw}");
        }
        DataType::Binary | DataType::LargeBinary | DataType::FixedSizeBinary(_) | DataType::BinaryView => {
            let bytes: &[u8] = match a.data_type() {
                DataType::Binary => a.as_binary::<i32>().value(row),
                DataType::LargeBinary => a.as_binary::<i64>().value(row),
                DataType::BinaryView => a.as_binary_view().value(row),
                _ => a.as_fixed_size_binary().value(row),
            };
            for b in bytes {
                let _ = write!(out, "{b:02x}");
            }
        }
        DataType::List(_) | DataType::LargeList(_) => {
            let values = match a.data_type() {
                DataType::List(_) => a.as_list::<i32>().value(row),
                _ => a.as_list::<i64>().value(row),
            };
            // As a JSON array, so a list equals the JSON document a
            // database without arrays stores it as.
            out.push('[');
            for i in 0..values.len() {
                if i > 0 {
                    out.push(',');
                }
                if values.is_null(i) {
                    out.push_str("null");
                    continue;
                }
                let mut item = String::new();
                cell(&values, i, json, &mut item)?;
                match values.data_type() {
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                        out.push_str(&serde_json::Value::String(item).to_string())
                    }
                    _ => out.push_str(&item),
                }
            }
            out.push(']');
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View if json => {
            let text = arrow::util::display::array_value_to_string(a, row)?;
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(v) => out.push_str(&v.to_string()),
                Err(_) => out.push_str(&text),
            }
        }
        _ => {
            let f = ArrayFormatter::try_new(a.as_ref(), &FormatOptions::default())?;
            let _ = write!(out, "{}", f.value(row));
        }
    }
    Ok(())
}
