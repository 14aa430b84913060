//! Pipeline files: TOML with `[source]`, `[[transforms]]`, `[[sinks]]` and
//! `[runtime]`, plus `${VAR}` interpolation and `SLUICE_…` overrides.
//!
//! Loading validates everything before anything connects: unknown keys,
//! wrong types and impossible combinations are [`ConfigError`]s naming the
//! file, line, column and key, with the fix when there is an obvious one.
//! The order is: parse and type-check the text (errors point into the file),
//! then interpolate `${VAR}` / `${VAR:-default}` in string values and apply
//! environment overrides (`SLUICE_RUNTIME__BATCH_ROWS=1000` sets
//! `runtime.batch_rows`; `SLUICE_SINKS__0__PATH` sets `sinks[0].path`), then
//! check the combinations.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use sluice_core::Registry;
use sluice_transforms::TransformConfig;

/// A whole pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Pipeline name, the key of its state; default the file stem.
    #[serde(default)]
    pub name: Option<String>,
    /// Where rows come from: a table with a `type` the registry knows,
    /// parsed by that connector's factory.
    pub source: toml::Table,
    /// Transform chain, applied in order.
    #[serde(default)]
    pub transforms: Vec<TransformConfig>,
    /// Where rows go; every sink receives every row.
    #[serde(default)]
    pub sinks: Vec<toml::Table>,
    /// Engine knobs.
    #[serde(default)]
    pub runtime: RuntimeConfig,
}

/// What happens to a row that is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// End the run at the first rejected row, naming it (default).
    #[default]
    Stop,
    /// Count it and go on.
    Skip,
    /// Write it to the dead-letter file and go on.
    Dlq,
}

/// `[runtime]`: every key has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Most rows per batch. Default 32768.
    pub batch_rows: usize,
    /// Input bytes per decoding unit (a chunk of a file): an integer or "2MiB". Default 2 MiB.
    pub batch_bytes: ByteSize,
    /// Longest a partial batch waits for slow input, in milliseconds. Default 500.
    pub linger_ms: u64,
    /// Decoding threads and partitions read at once; 0 means one per core. Default 0.
    pub parallelism: usize,
    /// Batches buffered between stages. Default 4.
    pub channel_capacity: usize,
    /// `stop` (default), `skip` or `dlq`.
    pub on_error: OnError,
    /// With `skip` or `dlq`: end the run once more rows than this are rejected.
    pub max_errors: Option<u64>,
    /// Dead-letter file (NDJSON) for `on_error = "dlq"`; default `NAME.rejects.ndjson`.
    pub dlq_path: Option<PathBuf>,
    /// Where the state store lives; default `.sluice`.
    pub state_dir: Option<PathBuf>,
    /// Seconds between progress lines when stderr is not a terminal. Default 10.
    pub progress_interval_s: u64,
    /// First retry waits up to this many milliseconds (doubling, with full jitter). Default 1000.
    pub retry_initial_ms: u64,
    /// Longest wait between retries, and before an open circuit's probe, in milliseconds. Default 30000.
    pub retry_max_ms: u64,
    /// Give up after this many seconds of failing without a success; 0 retries forever. Default 600.
    pub retry_give_up_s: u64,
    /// Consecutive failures that open the circuit breaker. Default 4.
    pub breaker_threshold: u32,
    /// Seconds a signalled run has to drain and checkpoint before it is aborted. Default 30.
    pub shutdown_timeout_s: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            batch_rows: 32 * 1024,
            batch_bytes: ByteSize(2 << 20),
            linger_ms: 500,
            parallelism: 0,
            channel_capacity: 4,
            on_error: OnError::Stop,
            max_errors: None,
            dlq_path: None,
            state_dir: None,
            progress_interval_s: 10,
            retry_initial_ms: 1000,
            retry_max_ms: 30_000,
            retry_give_up_s: 600,
            breaker_threshold: 4,
            shutdown_timeout_s: 30,
        }
    }
}

impl RuntimeConfig {
    /// Threads to use: `parallelism`, or one per core.
    pub fn threads(&self) -> usize {
        if self.parallelism > 0 {
            self.parallelism
        } else {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        }
    }

    /// How failures that may pass are retried.
    pub fn retry(&self) -> sluice_core::RetryPolicy {
        use std::time::Duration;
        sluice_core::RetryPolicy {
            initial: Duration::from_millis(self.retry_initial_ms),
            max: Duration::from_millis(self.retry_max_ms.max(self.retry_initial_ms)),
            give_up_after: (self.retry_give_up_s > 0).then(|| Duration::from_secs(self.retry_give_up_s)),
            breaker_threshold: self.breaker_threshold.max(1),
        }
    }

    /// Where sources cut batches.
    pub fn limits(&self) -> sluice_core::BatchLimits {
        sluice_core::BatchLimits {
            rows: self.batch_rows,
            bytes: self.batch_bytes.0 as usize,
            linger: std::time::Duration::from_millis(self.linger_ms),
        }
    }
}

/// A size in bytes, written as an integer or with a unit (`"8MiB"`, `"512KB"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => parse_size(&s)
                .map(ByteSize)
                .ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not a size; write 8388608 or \"8MiB\""))),
        }
    }
}

fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A configuration error with its place in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        if let Some(k) = &self.key {
            write!(f, ": {k}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A loaded, validated pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Name: the key of the pipeline's state.
    pub name: String,
    pub config: PipelineConfig,
    /// Directory relative paths resolve against (the working directory).
    pub base_dir: PathBuf,
    /// Hash of the effective configuration; a changed plan changes it.
    /// Settings that only change how a run behaves, not what it writes
    /// (retries, progress, parallelism, error limits), are left out, so a
    /// resumed run may change them.
    pub plan_hash: String,
    /// Start over instead of resuming an unfinished run (`--fresh`).
    pub fresh: bool,
    /// The connectors this program can build, by `type`.
    pub registry: Arc<Registry>,
}

impl Pipeline {
    /// The dead-letter file path.
    pub fn dlq_path(&self) -> PathBuf {
        match &self.config.runtime.dlq_path {
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) => self.base_dir.join(p),
            None => self.base_dir.join(format!("{}.rejects.ndjson", self.name)),
        }
    }

    /// Builds the source. Connects to nothing.
    pub fn build_source(&self) -> sluice_core::Result<Box<dyn sluice_core::Source>> {
        self.registry.build_source(&self.config.source)
    }

    /// Builds every sink, in order. Creates nothing.
    pub fn build_sinks(&self) -> sluice_core::Result<Vec<Box<dyn sluice_core::SinkConnector>>> {
        self.config.sinks.iter().map(|s| self.registry.build_sink(s)).collect()
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        match &self.config.runtime.state_dir {
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) => self.base_dir.join(p),
            None => self.base_dir.join(".sluice"),
        }
    }
}

/// Reads and validates a pipeline file; its connectors must be in `registry`.
pub fn load(path: &Path, registry: Arc<Registry>) -> Result<Pipeline, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        line: None,
        column: None,
        key: None,
        message: format!("cannot read: {e}"),
    })?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pipeline".into());
    // Every relative path in a pipeline resolves against the working directory.
    let base = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    parse(
        &text,
        &file,
        &name,
        base,
        &|k| std::env::var(k).ok(),
        &std::env::vars().collect::<Vec<_>>(),
        registry,
    )
}

/// Validates pipeline text. `env` answers `${VAR}`; `overrides` are the
/// environment variables considered for `SLUICE_…` overrides.
pub fn parse(
    text: &str,
    file: &str,
    default_name: &str,
    base_dir: PathBuf,
    env: &dyn Fn(&str) -> Option<String>,
    overrides: &[(String, String)],
    registry: Arc<Registry>,
) -> Result<Pipeline, ConfigError> {
    let err_at = |span: Option<std::ops::Range<usize>>, key: Option<String>, message: String| {
        let (line, column) = span.map(|s| line_col(text, s.start)).unzip();
        ConfigError {
            file: file.to_string(),
            line,
            column,
            key,
            message,
        }
    };
    // 1. Syntax and types, with positions in the file.
    let mut table: toml::Table = toml::from_str(text).map_err(|e| err_at(e.span(), None, e.message().to_string()))?;
    if let Err(e) = toml::from_str::<PipelineConfig>(text) {
        let span = refine_span(text, e.span(), e.message());
        return Err(err_at(span, None, explain(e.message())));
    }
    parse_connectors(text, &registry).map_err(|(span, key, message)| err_at(span, Some(key), message))?;
    // 2. Interpolation and overrides.
    interpolate(&mut table, "", env).map_err(|(key, message)| err_at(locate(text, &key), Some(key), message))?;
    apply_overrides(&mut table, overrides).map_err(|(var, m)| err_at(None, Some(var), m))?;
    from_table(table, file, default_name, base_dir, registry).map_err(|mut e| {
        if let Some(key) = &e.key
            && let Some(span) = locate(text, key)
        {
            let (line, column) = line_col(text, span.start);
            e.line = Some(line);
            e.column = Some(column);
        }
        e
    })
}

/// Applies `SLUICE_SECTION__KEY=value` overrides (`SLUICE_SINKS__0__API_KEY`)
/// to a pipeline table; an error names the variable.
pub fn apply_overrides(table: &mut toml::Table, overrides: &[(String, String)]) -> Result<(), (String, String)> {
    for (var, value) in overrides {
        let Some(path) = var.strip_prefix("SLUICE_").filter(|p| p.contains("__")) else {
            continue;
        };
        let keys: Vec<String> = path.split("__").map(|k| k.to_ascii_lowercase()).collect();
        // A secret is text even when it looks like a number.
        let secret = keys
            .last()
            .is_some_and(|k| k == "user" || CREDENTIALS.contains(&k.as_str()));
        let value = if secret {
            toml::Value::String(value.clone())
        } else {
            parse_value(value)
        };
        set_path(table, &keys, value).map_err(|m| (var.clone(), m))?;
    }
    Ok(())
}

/// Builds a pipeline from a table (a parsed file after interpolation, or one
/// assembled by `sluice copy`), checking every combination.
pub fn from_table(
    table: toml::Table,
    origin: &str,
    default_name: &str,
    base_dir: PathBuf,
    registry: Arc<Registry>,
) -> Result<Pipeline, ConfigError> {
    let err = |key: Option<String>, message: String| ConfigError {
        file: origin.to_string(),
        line: None,
        column: None,
        key,
        message,
    };
    let config: PipelineConfig = toml::Value::Table(table.clone())
        .try_into()
        .map_err(|e: toml::de::Error| err(None, explain(e.message())))?;
    let name = config.name.clone().unwrap_or_else(|| default_name.to_string());
    check(&config, &registry).map_err(|(key, message)| err(Some(key), message))?;
    let mut planned = table.clone();
    if let Some(toml::Value::Table(rt)) = planned.get_mut("runtime") {
        for k in OPERATIONAL {
            rt.remove(*k);
        }
    }
    // New credentials for the same source and destination resume the same job.
    let strip = |section: &mut toml::Value| {
        if let toml::Value::Table(t) = section {
            for k in CREDENTIALS {
                t.remove(*k);
            }
        }
    };
    if let Some(source) = planned.get_mut("source") {
        strip(source);
        if let toml::Value::Table(t) = source {
            for k in SOURCE_MOMENT {
                t.remove(*k);
            }
        }
    }
    if let Some(toml::Value::Array(sinks)) = planned.get_mut("sinks") {
        sinks.iter_mut().for_each(strip);
    }
    let plan_hash = format!(
        "{:016x}",
        fnv1a(toml::to_string(&planned).unwrap_or_default().as_bytes())
    );
    Ok(Pipeline {
        name,
        config,
        base_dir,
        plan_hash,
        fresh: false,
        registry,
    })
}

/// Connector keys holding secrets, left out of the plan hash.
const CREDENTIALS: &[&str] = &["password", "api_key", "bearer"];

/// Source keys that say at which moment a source reads, not what: the
/// snapshot `sluice sync` hands its first copy is gone when it resumes.
const SOURCE_MOMENT: &[&str] = &["snapshot"];

/// Runtime settings that change how a run behaves, not what it writes.
const OPERATIONAL: &[&str] = &[
    "parallelism",
    "channel_capacity",
    "on_error",
    "max_errors",
    "dlq_path",
    "progress_interval_s",
    "retry_initial_ms",
    "retry_max_ms",
    "retry_give_up_s",
    "breaker_threshold",
    "shutdown_timeout_s",
];

/// Rewrites serde's messages into advice.
fn explain(message: &str) -> String {
    if message.starts_with("missing field `sinks`") || message.contains("missing field `source`") {
        return format!("{message}; a pipeline needs a [source] table and at least one [[sinks]] table");
    }
    if message.starts_with("unknown field") {
        return format!("{message}; check the spelling (see `sluice list` for every option)");
    }
    if message.starts_with("unknown variant") {
        return format!("{message} (see `sluice list`)");
    }
    message.to_string()
}

/// For an unknown field, point at the key itself rather than its table.
fn refine_span(text: &str, span: Option<std::ops::Range<usize>>, message: &str) -> Option<std::ops::Range<usize>> {
    let span = span?;
    let field = message
        .strip_prefix("unknown field `")
        .and_then(|r| r.split('`').next());
    if let Some(field) = field {
        // The first such key from the table the error points at onwards: a
        // sub-table such as [source.csv] is reported at its parent's span.
        let rest = &text[span.start.min(text.len())..];
        for (off, line) in line_starts(rest) {
            let t = line.trim_start();
            if t.starts_with(field) && t[field.len()..].trim_start().starts_with('=') {
                let at = span.start + off + (line.len() - t.len());
                return Some(at..at + field.len());
            }
        }
    }
    Some(span)
}

fn line_starts(s: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut off = 0;
    s.split_inclusive('\n').map(move |l| {
        let r = (off, l);
        off += l.len();
        r
    })
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(before.len(), |i| before.len() - i - 1) + 1;
    (line, col)
}

/// Finds the line of a dotted key (`runtime.dlq_path`, `sinks[1].key`) in
/// the text, for errors found after parsing.
fn locate(text: &str, key: &str) -> Option<std::ops::Range<usize>> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let leaf = parts.pop()?;
    let (table, index) = match parts.first() {
        Some(t) => match t.split_once('[') {
            // `sinks[1]`, or a transform label such as `transforms[2] (filter)`.
            Some((name, idx)) => (
                name.to_string(),
                idx.split(']').next().and_then(|i| i.parse::<usize>().ok()),
            ),
            None => (t.to_string(), None),
        },
        None => (String::new(), None),
    };
    let mut in_table = table.is_empty();
    let mut seen = 0usize;
    for (off, line) in line_starts(text) {
        let t = line.trim();
        if t.starts_with('[') {
            let header = t.trim_matches(|c| c == '[' || c == ']').trim();
            in_table = header == table && {
                let hit = index.is_none_or(|i| i == seen);
                if t.starts_with("[[") && header == table {
                    seen += 1;
                }
                hit
            };
            if in_table && leaf == table {
                return Some(off..off + 1);
            }
            continue;
        }
        if in_table && t.starts_with(leaf) && t[leaf.len()..].trim_start().starts_with('=') {
            let at = off + (line.len() - line.trim_start().len());
            return Some(at..at + leaf.len());
        }
    }
    None
}

fn interpolate(
    value: &mut toml::Table,
    prefix: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), (String, String)> {
    for (k, v) in value.iter_mut() {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        interpolate_value(v, &key, env)?;
    }
    Ok(())
}

fn interpolate_value(
    v: &mut toml::Value,
    key: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), (String, String)> {
    match v {
        toml::Value::String(s) if s.contains('$') => *s = expand(s, env).map_err(|m| (key.to_string(), m))?,
        toml::Value::Table(t) => interpolate(t, key, env)?,
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let k = match item {
                    toml::Value::Table(_) => format!("{key}[{i}]"),
                    _ => key.to_string(),
                };
                interpolate_value(item, &k, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Expands `${VAR}` and `${VAR:-default}`; `$${` is a literal `${`.
fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        if rest[..i].ends_with('$') {
            out.push_str(&rest[..i - 1]);
            out.push_str("${");
            rest = &rest[i + 2..];
            continue;
        }
        out.push_str(&rest[..i]);
        let end = rest[i..]
            .find('}')
            .ok_or_else(|| format!("unclosed `${{` in \"{s}\""))?
            + i;
        let inner = &rest[i + 2..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        match (env(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set; export it or write ${{{name}:-default}}"
                ));
            }
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn parse_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn set_path(table: &mut toml::Table, keys: &[String], value: toml::Value) -> Result<(), String> {
    let (first, rest) = keys.split_first().ok_or("empty key")?;
    if rest.is_empty() {
        table.insert(first.clone(), value);
        return Ok(());
    }
    let entry = table
        .entry(first.clone())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    set_in_value(entry, rest, value)
}

fn set_in_value(target: &mut toml::Value, keys: &[String], value: toml::Value) -> Result<(), String> {
    match target {
        toml::Value::Table(t) => set_path(t, keys, value),
        toml::Value::Array(items) => {
            let (idx, rest) = keys.split_first().ok_or("empty key")?;
            let i: usize = idx
                .parse()
                .map_err(|_| format!("`{idx}` is not an index into an array of tables"))?;
            let item = items.get_mut(i).ok_or_else(|| format!("there is no element {i}"))?;
            if rest.is_empty() {
                *item = value;
                Ok(())
            } else {
                set_in_value(item, rest, value)
            }
        }
        _ => Err("cannot set a key inside a plain value".into()),
    }
}

/// Where the connector tables are in the text, for errors inside them.
#[derive(Deserialize)]
struct ConnectorSpans {
    source: Option<toml::Spanned<toml::Table>>,
    #[serde(default)]
    sinks: Vec<toml::Spanned<toml::Table>>,
}

/// Has each connector's factory check its table as written (keys and value
/// types); an error comes with the table's place in the text and its key.
#[allow(clippy::type_complexity)]
fn parse_connectors(text: &str, registry: &Registry) -> Result<(), (Option<std::ops::Range<usize>>, String, String)> {
    let Ok(spans) = toml::from_str::<ConnectorSpans>(text) else {
        return Ok(());
    };
    let located = |e: sluice_core::Error, table: &str, index: Option<usize>, span: std::ops::Range<usize>| {
        let (key, message) = core_key(e, table, index);
        // A key the message names (`sinks[1].type`) is found in the text;
        // otherwise the table, or the unknown field inside it.
        let place = key
            .contains('.')
            .then(|| locate(text, &key))
            .flatten()
            .or_else(|| refine_span(text, Some(span), &message));
        (place, key, explain(&message))
    };
    if let Some(source) = &spans.source {
        registry
            .parse_source(source.get_ref())
            .map_err(|e| located(e, "source", None, source.span()))?;
    }
    for (i, sink) in spans.sinks.iter().enumerate() {
        registry
            .parse_sink(sink.get_ref())
            .map_err(|e| located(e, "sinks", Some(i), sink.span()))?;
    }
    Ok(())
}

/// Combinations serde cannot see; returns the key and the fix.
fn check(c: &PipelineConfig, registry: &Registry) -> Result<(), (String, String)> {
    let r = &c.runtime;
    if c.sinks.is_empty() {
        return Err((
            "sinks".into(),
            "no sinks: add at least one [[sinks]] table (type = \"null\" only counts rows)".into(),
        ));
    }
    if r.batch_rows == 0 {
        return Err(("runtime.batch_rows".into(), "must be at least 1".into()));
    }
    if r.channel_capacity == 0 {
        return Err(("runtime.channel_capacity".into(), "must be at least 1".into()));
    }
    if r.batch_bytes.0 < 1024 {
        return Err(("runtime.batch_bytes".into(), "must be at least 1KiB".into()));
    }
    if r.dlq_path.is_some() && r.on_error != OnError::Dlq {
        return Err((
            "runtime.dlq_path".into(),
            "is set but on_error is not \"dlq\"; set on_error = \"dlq\" or remove dlq_path".into(),
        ));
    }
    if r.max_errors.is_some() && r.on_error == OnError::Stop {
        return Err((
            "runtime.max_errors".into(),
            "only applies with on_error = \"skip\" or \"dlq\" (\"stop\" ends at the first error)".into(),
        ));
    }
    registry
        .build_source(&c.source)
        .map_err(|e| core_key(e, "source", None))?;
    let mut written = std::collections::HashSet::new();
    for (i, s) in c.sinks.iter().enumerate() {
        let sink = registry.build_sink(s).map_err(|e| core_key(e, "sinks", Some(i)))?;
        for p in sink.resources() {
            if !written.insert(p.clone()) {
                return Err((
                    format!("sinks[{i}].path"),
                    format!("`{p}` is written by another sink too; give each sink its own path"),
                ));
            }
        }
    }
    sluice_transforms::build(&c.transforms).map_err(|e| core_key(e, "transforms", None))?;
    Ok(())
}

/// Turns a connector's `sinks.format` into `sinks[2].format`.
fn core_key(e: sluice_core::Error, table: &str, index: Option<usize>) -> (String, String) {
    match e {
        sluice_core::Error::Config { key, message } => {
            let key = match index {
                Some(i) if key.starts_with(table) => format!("{table}[{i}]{}", &key[table.len()..]),
                _ => key,
            };
            (key, message)
        }
        other => (table.to_string(), other.to_string()),
    }
}

/// FNV-1a, stable across builds and platforms (the plan hash).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Arc<Registry> {
        Arc::new(sluice_connectors::registry())
    }

    fn parse_str(text: &str) -> Result<Pipeline, ConfigError> {
        let env = |k: &str| (k == "OUT_DIR").then(|| "/tmp/o".to_string());
        parse(text, "p.toml", "p", PathBuf::from("."), &env, &[], registry())
    }

    const OK: &str = "[source]\ntype = \"file\"\npath = \"in.csv\"\n\n[[sinks]]\ntype = \"null\"\n";

    #[test]
    fn minimal_pipeline_gets_defaults() {
        let p = parse_str(OK).unwrap();
        assert_eq!(p.config.runtime.batch_rows, 32768);
        assert_eq!(p.config.runtime.on_error, OnError::Stop);
        assert_eq!(p.name, "p");
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let text =
            "[source]\ntype = \"file\"\npath = \"in.csv\"\n\n[[sinks]]\ntype = \"null\"\n\n[runtime]\nbatch_rowz = 5\n";
        let e = parse_str(text).unwrap_err();
        assert_eq!(e.line, Some(9), "{e}");
        assert!(e.to_string().contains("batch_rowz"), "{e}");
    }

    #[test]
    fn unknown_key_in_a_sub_table_names_its_own_line() {
        let text = "[source]\ntype = \"file\"\npath = \"in.csv\"\n[source.csv]\ndelimter = \";\"\n\n[[sinks]]\ntype = \"null\"\n";
        let e = parse_str(text).unwrap_err();
        assert_eq!(e.line, Some(5), "{e}");
    }

    #[test]
    fn sql_syntax_errors_are_found_without_data() {
        let text = format!("{OK}\n[[transforms]]\ntype = \"filter\"\npredicate = \"amount >\"\n");
        let e = parse_str(&text).unwrap_err();
        assert!(e.to_string().contains("transforms[0] (filter)"), "{e}");
        assert_eq!(e.line, Some(10), "{e}");
    }

    #[test]
    fn wrong_type_names_line() {
        let text = format!("{OK}\n[runtime]\nbatch_rows = \"many\"\n");
        let e = parse_str(&text).unwrap_err();
        assert_eq!(e.line, Some(9), "{e}");
    }

    #[test]
    fn dlq_path_without_dlq_is_refused_with_the_fix() {
        let text = format!("{OK}\n[runtime]\ndlq_path = \"bad.ndjson\"\n");
        let e = parse_str(&text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("runtime.dlq_path"));
        assert_eq!(e.line, Some(9));
        assert!(e.message.contains("on_error = \"dlq\""), "{e}");
    }

    #[test]
    fn interpolation_and_overrides_apply() {
        let text =
            "[source]\ntype = \"file\"\npath = \"in.csv\"\n\n[[sinks]]\ntype = \"file\"\npath = \"${OUT_DIR}/x.csv\"\n";
        let overrides = vec![("SLUICE_RUNTIME__BATCH_ROWS".to_string(), "77".to_string())];
        let env = |k: &str| (k == "OUT_DIR").then(|| "/tmp/o".to_string());
        let p = parse(text, "p.toml", "p", PathBuf::from("."), &env, &overrides, registry()).unwrap();
        assert_eq!(p.config.runtime.batch_rows, 77);
        assert_eq!(p.config.sinks[0]["path"].as_str(), Some("/tmp/o/x.csv"));
    }

    #[test]
    fn missing_variable_is_named() {
        let text = "[source]\ntype = \"file\"\npath = \"${NOPE}/in.csv\"\n\n[[sinks]]\ntype = \"null\"\n";
        let e = parse_str(text).unwrap_err();
        assert!(e.message.contains("NOPE is not set"), "{e}");
        assert_eq!(e.line, Some(3));
    }

    #[test]
    fn unknown_connector_type_names_its_line_and_the_choices() {
        let text = "[source]\ntype = \"file\"\npath = \"in.csv\"\n\n[[sinks]]\ntype = \"nul\"\n";
        let e = parse_str(text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("sinks[0].type"), "{e}");
        assert_eq!(e.line, Some(6), "{e}");
        assert!(e.message.contains("`nul`") && e.message.contains("null"), "{e}");
    }

    #[test]
    fn unknown_connector_key_names_its_line() {
        let text = "[source]\ntype = \"file\"\npath = \"in.csv\"\n\n[[sinks]]\ntype = \"null\"\n\n[[sinks]]\ntype = \"csv\"\npath = \"o.csv\"\nheader = true\n";
        let e = parse_str(text).unwrap_err();
        assert_eq!(e.line, Some(11), "{e}");
        assert!(
            e.message.contains("unknown field `header`") && e.message.contains("csv"),
            "{e}"
        );
    }

    #[test]
    fn two_sinks_writing_one_file_are_refused() {
        let text = "[source]\ntype = \"file\"\npath = \"in.csv\"\n\n[[sinks]]\ntype = \"file\"\npath = \"o.csv\"\n\n[[sinks]]\ntype = \"csv\"\npath = \"o.csv\"\n";
        let e = parse_str(text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("sinks[1].path"), "{e}");
        assert!(e.message.contains("another sink"), "{e}");
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("8MiB"), Some(8 << 20));
        assert_eq!(parse_size("512 kb"), Some(512 << 10));
        assert_eq!(parse_size("lots"), None);
    }
}
