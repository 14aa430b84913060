//! The Elasticsearch/OpenSearch sink: `_bulk` requests in flight under an
//! adaptive concurrency limit, retries of only the items that failed, and
//! dead letters for the items the cluster refuses for good.
//!
//! Every item the sink is handed ends in exactly one of two places: the
//! cluster acknowledged it, or it was returned as a rejection with the
//! server's reason. Items refused for a passing reason (429, 503, rejected
//! executions, lost connections) are kept, in bounded memory, and sent
//! again after a backoff; new writes wait while that memory is full.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use reqwest::Method;
use serde_json::{Value, json};
use sluice_core::retry::{Next, Retrier, RetryPolicy};
use sluice_core::{Batch, Error, Rejection, Result, Sink, SinkConnector, Stage, StreamInfo};
use tokio::task::JoinSet;

use super::arc::{Limiter, Outcome};
use super::bulk::{Encoder, Item, Verdict, verdicts};
use super::client::{Body, Cluster, Reply, segment};
use super::config::{Concurrency, LoadTuning, SearchSinkConfig};
use super::toml_to_json;

/// Schema metadata keys a search source sets so a search sink can create
/// the target index like the source one.
pub const META_MAPPINGS: &str = "sluice.search.mappings";
pub const META_SETTINGS: &str = "sluice.search.settings";
pub const META_ALIASES: &str = "sluice.search.aliases";

/// Batches a sink may hold written but unflushed (see `Sink::pipeline_depth`).
const PIPELINE_DEPTH: usize = 32;

/// `[[sinks]] type = "elasticsearch"` / `"opensearch"`.
pub struct SearchSink {
    cfg: SearchSinkConfig,
    /// The client, built once; each stream asks the cluster what it is.
    cluster: Cluster,
    name: &'static str,
    mappings: Option<Value>,
    settings: Option<Value>,
}

impl SearchSink {
    pub fn new(cfg: SearchSinkConfig, name: &'static str) -> Result<Self> {
        let cluster = Cluster::new(&cfg.cluster())?;
        if cfg.bulk_docs == 0 || cfg.bulk_bytes < 1024 {
            return Err(Error::config(
                "sinks.bulk_docs",
                "bulk_docs must be at least 1 and bulk_bytes at least 1024",
            ));
        }
        let mut mappings = cfg.mappings.as_ref().map(toml_to_json);
        if let Some(path) = &cfg.mappings_file {
            if mappings.is_some() {
                return Err(Error::config(
                    "sinks.mappings_file",
                    "give mappings or mappings_file, not both",
                ));
            }
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            mappings = Some(
                serde_json::from_str(&text)
                    .map_err(|e| Error::config("sinks.mappings_file", format!("{path}: not JSON ({e})")))?,
            );
        }
        if let Some(m) = &mappings
            && !m.is_object()
        {
            return Err(Error::config(
                "sinks.mappings",
                "mappings must be a JSON object ({\"properties\": …})",
            ));
        }
        let settings = cfg.settings.as_ref().map(toml_to_json);
        Ok(SearchSink {
            cfg,
            cluster,
            name,
            mappings,
            settings,
        })
    }

    fn index_for(&self, stream: &str) -> String {
        self.cfg
            .index
            .clone()
            .unwrap_or_else(|| "{stream}".into())
            .replace("{stream}", stream)
    }
}

#[async_trait]
impl SinkConnector for SearchSink {
    fn name(&self) -> &str {
        self.name
    }

    fn read_back(&self, stream: &str) -> Option<Result<Box<dyn sluice_core::Source>>> {
        let c = &self.cfg;
        let cfg = super::SearchSourceConfig {
            url: c.url.clone(),
            user: c.user.clone(),
            password: c.password.clone(),
            api_key: c.api_key.clone(),
            bearer: c.bearer.clone(),
            ca_cert: c.ca_cert.clone(),
            insecure: c.insecure,
            timeout_s: c.timeout_s,
            index: Some(index_pattern(c.index.as_deref(), stream)),
            indices: Vec::new(),
            query: None,
            stream: Some(stream.to_string()),
            slices: None,
            page_size: 1000,
            keep_alive: "5m".into(),
            paging: Default::default(),
        };
        Some(super::SearchSource::new(cfg, self.name).map(|s| Box::new(s) as Box<dyn sluice_core::Source>))
    }

    fn holds_documents(&self) -> bool {
        true
    }

    fn document_ids(&self, stream: &str, data: &RecordBatch) -> Option<Result<Vec<Option<String>>>> {
        Some(super::document_ids(&self.cfg, stream, data))
    }

    fn target(&self, stream: &str) -> String {
        format!("{}/{}", self.cluster.shown, self.index_for(stream))
    }

    async fn open(&self, stream: &StreamInfo) -> Result<Box<dyn Sink>> {
        let mut cluster = self.cluster.clone();
        cluster.identify().await?;
        let encoder = Encoder::new(&self.cfg, stream.schema.clone(), &stream.name)?;
        let from_source = |key: &str| from_meta(stream, key);
        let fixed = match self.cfg.concurrency {
            Concurrency::Adaptive => None,
            Concurrency::Fixed(n) => Some(n),
        };
        let mut sink = SearchStreamSink {
            by: self.name.into(),
            cluster,
            limiter: Arc::new(Limiter::new(fixed, self.cfg.max_concurrency)),
            encoder,
            cfg: self.cfg.clone(),
            mappings: self.mappings.clone().or_else(|| from_source(META_MAPPINGS)),
            settings: self.settings.clone().or_else(|| from_source(META_SETTINGS)),
            aliases: if self.cfg.copy_aliases {
                from_source(META_ALIASES)
            } else {
                None
            },
            buf: BytesMut::with_capacity(1 << 20),
            items: Vec::new(),
            ready: VecDeque::new(),
            retry: VecDeque::new(),
            retry_bytes: 0,
            tasks: JoinSet::new(),
            refused: Vec::new(),
            prepared: HashSet::new(),
            tuned: Vec::new(),
            retrier: Retrier::new(stream.retry),
            give_up_after: stream.retry.give_up_after,
            // Pushed-back items pause briefly, never longer than the run's
            // longest wait.
            backoff: Retrier::new(RetryPolicy {
                initial: Duration::from_millis(50).min(stream.retry.initial),
                max: Duration::from_secs(2).min(stream.retry.max),
                give_up_after: None,
                breaker_threshold: u32::MAX,
            }),
            retry_not_before: None,
            last_progress: Instant::now(),
            stats: Stats::default(),
            stream: stream.name.clone(),
        };
        if let Some(index) = sink.encoder.fixed_index().map(str::to_string) {
            sink.prepare(&index).await?;
        }
        Ok(Box::new(sink))
    }

    async fn plan(&self, stream: &StreamInfo) -> Result<Vec<String>> {
        let index = self.index_for(&stream.name);
        let mut steps = Vec::new();
        if self.cfg.create {
            let settings = self.settings.clone().or_else(|| from_meta(stream, META_SETTINGS));
            let mappings = self.mappings.clone().or_else(|| from_meta(stream, META_MAPPINGS));
            let body = json!({"settings": settings.unwrap_or(json!({})), "mappings": mappings.unwrap_or(json!({}))});
            steps.push(format!("PUT /{index} {body}   (when missing)"));
        }
        if self.cfg.load_tuning != LoadTuning::Never {
            steps.push(format!(
                "PUT /{index}/_settings {{\"index\":{{\"refresh_interval\":\"-1\",\"number_of_replicas\":0}}}}   (restored at the end)"
            ));
        }
        steps.push(format!(
            "POST /_bulk   ({} docs or {} bytes per request)",
            self.cfg.bulk_docs, self.cfg.bulk_bytes
        ));
        if let Some(alias) = &self.cfg.alias {
            steps.push(format!("POST /_aliases  point `{alias}` at {index}"));
        }
        Ok(steps)
    }

    async fn check(&self, streams: &[StreamInfo]) -> Result<Vec<String>> {
        let mut cluster = self.cluster.clone();
        cluster.identify().await?;
        let mut lines = vec![format!(
            "{} {}.{} answers at {}",
            match cluster.flavor {
                super::client::Flavor::OpenSearch => "OpenSearch",
                super::client::Flavor::Elasticsearch => "Elasticsearch",
            },
            cluster.version.0,
            cluster.version.1,
            cluster.shown
        )];
        for s in streams {
            let index = self.index_for(&s.name);
            if index.contains('{') {
                continue;
            }
            let reply = cluster
                .send(Method::HEAD, &format!("/{}", segment(&index)), None)
                .await?;
            lines.push(match reply.status.as_u16() {
                200 => format!("index {index} exists"),
                404 if self.cfg.create => format!("index {index} will be created"),
                404 => {
                    return Err(Error::config(
                        "sinks.create",
                        format!("index {index} does not exist and create = false"),
                    ));
                }
                _ => return Err(cluster.status_error(&Method::HEAD, &index, &reply)),
            });
        }
        Ok(lines)
    }
}

/// What a search source put in the stream's schema metadata under `key`.
fn from_meta(stream: &StreamInfo, key: &str) -> Option<Value> {
    let text = stream.schema.metadata().get(key)?;
    serde_json::from_str::<Value>(text).ok().filter(|v| !v.is_null())
}

#[derive(Debug, Default)]
struct Stats {
    requests: u64,
    retried_items: u64,
    back_pressure: u64,
}

/// A bulk request: its body and the items in it, in order.
struct Request {
    body: Bytes,
    items: Vec<Item>,
}

/// How a request ended.
enum Done {
    /// The server answered `_bulk`: one verdict per item.
    Answered(Vec<Item>, Vec<Verdict>),
    /// The request as a whole failed; every item is still to be written.
    /// Carries the HTTP status when the server answered.
    Failed(Vec<Item>, Error, Option<Duration>, Option<u16>),
}

struct SearchStreamSink {
    by: Arc<str>,
    stream: Arc<str>,
    cluster: Cluster,
    limiter: Arc<Limiter>,
    encoder: Encoder,
    cfg: SearchSinkConfig,
    mappings: Option<Value>,
    settings: Option<Value>,
    /// The source index's aliases, given to indexes this sink creates.
    aliases: Option<Value>,
    /// The request being filled, and its items' (range, origin, line).
    buf: BytesMut,
    items: Vec<Filled>,
    /// Requests cut and waiting for a slot.
    ready: VecDeque<Request>,
    /// Items to send again, with the bytes they hold.
    retry: VecDeque<Item>,
    retry_bytes: usize,
    retry_not_before: Option<Instant>,
    /// When the cluster last accepted an item.
    last_progress: Instant,
    /// How long the cluster may push back without accepting a single item
    /// before the run fails (it can be resumed); `None`: never
    /// (`runtime.retry_give_up_s`).
    give_up_after: Option<Duration>,
    tasks: JoinSet<Done>,
    refused: Vec<Rejection>,
    /// Indexes created or checked, and settings to restore at the end.
    prepared: HashSet<String>,
    tuned: Vec<(String, Value)>,
    /// Whole-request failures (connection lost, 5xx): backoff, circuit
    /// breaker and give-up by the run's `[runtime]` retry settings.
    retrier: Retrier,
    /// Items pushed back: a short, jittered pause before they go again.
    backoff: Retrier,
    stats: Stats,
}

/// Key in an index's `_meta` holding the settings a load changed and will
/// restore (`refresh_interval`, `number_of_replicas`), until it has.
const RESTORE_MARKER: &str = "sluice_restore";

impl SearchStreamSink {
    /// Creates the index (mappings first) unless it exists, and tunes it
    /// for the load.
    async fn prepare(&mut self, index: &str) -> Result<()> {
        if !self.prepared.insert(index.to_string()) {
            return Ok(());
        }
        let path = format!("/{}", segment(index));
        let exists = loop {
            match self.cluster.send(Method::HEAD, &path, None).await {
                Ok(r) if r.status.as_u16() == 200 => break true,
                Ok(r) if r.status.as_u16() == 404 => break false,
                Ok(r) => {
                    self.wait_or_give_up(self.cluster.status_error(&Method::HEAD, &path, &r))
                        .await?
                }
                Err(e) if e.is_retryable() => self.wait_or_give_up(e).await?,
                Err(e) => return Err(e),
            }
        };
        let mut created = false;
        if !exists {
            if !self.cfg.create {
                return Err(Error::config(
                    "sinks.create",
                    format!("index {index} does not exist; create it or set create = true"),
                ));
            }
            let mut body = json!({});
            if let Some(m) = &self.mappings {
                body["mappings"] = m.clone();
            }
            if let Some(s) = &self.settings {
                body["settings"] = s.clone();
            }
            if let Some(Value::Object(aliases)) = &self.aliases {
                // An alias that already names another index stays where it
                // is: giving it the new index too would double its results.
                let mut given = serde_json::Map::new();
                for (name, spec) in aliases {
                    let taken = self
                        .cluster
                        .send(Method::GET, &format!("/_alias/{}", segment(name)), None)
                        .await?;
                    if taken.status.is_success() {
                        tracing::warn!(index, alias = %name, "the source's alias already names an index here; not copied");
                    } else {
                        given.insert(name.clone(), spec.clone());
                    }
                }
                if !given.is_empty() {
                    body["aliases"] = Value::Object(given);
                }
            }
            let reply = self.cluster.send(Method::PUT, &path, Some(Body::json(&body))).await?;
            if reply.status.is_success() {
                created = true;
                tracing::info!(
                    index,
                    "created index{}",
                    if self.mappings.is_some() {
                        " with its mappings"
                    } else {
                        ""
                    }
                );
            } else if !String::from_utf8_lossy(&reply.body).contains("resource_already_exists_exception") {
                // Another writer creating it at the same moment is fine.
                return Err(self.cluster.status_error(&Method::PUT, &path, &reply));
            }
        }
        let tune = match self.cfg.load_tuning {
            LoadTuning::Never => false,
            LoadTuning::Always => true,
            LoadTuning::Auto => created,
        };
        // A load that was killed before it restored the settings left them
        // in the index's mapping metadata: this run restores them at its end.
        if !created && let Some(restore) = self.restore_marker(&path).await {
            tracing::info!(
                index,
                "an earlier load tuned this index; its settings are restored at the end"
            );
            self.tuned.push((index.to_string(), restore));
            return Ok(());
        }
        if tune {
            let settings = self
                .cluster
                .json(Method::GET, &format!("{path}/_settings"), None)
                .await?;
            let current = settings
                .as_object()
                .and_then(|m| m.values().next())
                .map(|v| v["settings"]["index"].clone())
                .unwrap_or(Value::Null);
            let before = json!({"index": {
                "refresh_interval": current.get("refresh_interval").cloned().unwrap_or(Value::Null),
                "number_of_replicas": current.get("number_of_replicas").cloned().unwrap_or(Value::Null),
            }});
            // Recorded before anything changes, so a crash cannot lose them.
            self.set_restore_marker(&path, Some(&before)).await;
            self.cluster
                .json(
                    Method::PUT,
                    &format!("{path}/_settings"),
                    Some(&json!({"index": {"refresh_interval": "-1", "number_of_replicas": 0}})),
                )
                .await?;
            tracing::info!(index, "refresh off and no replicas while loading; restored at the end");
            self.tuned.push((index.to_string(), before));
        }
        Ok(())
    }

    /// The index's `_meta` (in its mappings); `None` when it cannot be read.
    async fn index_meta(&self, path: &str) -> Option<serde_json::Map<String, Value>> {
        let mapping = self
            .cluster
            .json(Method::GET, &format!("{path}/_mapping"), None)
            .await
            .ok()?;
        let meta = mapping.as_object().and_then(|m| m.values().next())?["mappings"]["_meta"].clone();
        Some(meta.as_object().cloned().unwrap_or_default())
    }

    /// The settings an earlier load recorded to restore (`_meta.sluice_restore`).
    async fn restore_marker(&self, path: &str) -> Option<Value> {
        self.index_meta(path)
            .await?
            .remove(RESTORE_MARKER)
            .filter(Value::is_object)
    }

    /// Records (or, with `None`, clears) the settings to restore, keeping
    /// the rest of the index's `_meta`. Best effort: a cluster that refuses
    /// it still gets its settings back at the end of an uninterrupted load.
    async fn set_restore_marker(&self, path: &str, restore: Option<&Value>) {
        let mut meta = self.index_meta(path).await.unwrap_or_default();
        match restore {
            Some(r) => meta.insert(RESTORE_MARKER.into(), r.clone()),
            None if meta.contains_key(RESTORE_MARKER) => meta.insert(RESTORE_MARKER.into(), Value::Null),
            None => return,
        };
        let body = json!({"_meta": meta});
        if let Err(e) = self
            .cluster
            .json(Method::PUT, &format!("{path}/_mapping"), Some(&body))
            .await
        {
            tracing::warn!(path, error = %e, "could not record the index settings to restore in its _meta");
        }
    }

    /// Waits as the request retrier says, or gives up with `e`.
    async fn wait_or_give_up(&mut self, e: Error) -> Result<()> {
        match self.retrier.failure() {
            Next::Wait { delay, attempt, .. } => {
                tracing::warn!(stream = %self.stream, error = %e, "{}: attempt {attempt} failed; retrying in {:.1}s", self.by, delay.as_secs_f64());
                tokio::time::sleep(delay).await;
                self.retrier.waited();
                Ok(())
            }
            Next::GiveUp { attempts, failing_for } => Err(Error::connection(
                &self.cluster.shown,
                format!(
                    "{e} (gave up after {attempts} attempts over {}s; raise runtime.retry_give_up_s to wait longer)",
                    failing_for.as_secs()
                ),
            )),
        }
    }

    /// Cuts the request being filled.
    fn cut(&mut self) {
        if !self.items.is_empty() {
            let request = take_request(&mut self.buf, &mut self.items);
            self.ready.push_back(request);
        }
    }

    /// Cuts a request out of the items waiting for a retry, once their
    /// backoff has passed.
    fn cut_retry(&mut self) -> Option<Request> {
        if self.retry.is_empty() || self.retry_not_before.is_some_and(|t| t > Instant::now()) {
            return None;
        }
        let mut body = BytesMut::new();
        let mut items = Vec::new();
        while let Some(item) = self.retry.pop_front() {
            if !items.is_empty()
                && (items.len() >= self.cfg.bulk_docs || body.len() + item.bytes.len() > self.cfg.bulk_bytes)
            {
                self.retry.push_front(item);
                break;
            }
            self.retry_bytes -= item.bytes.len();
            body.extend_from_slice(&item.bytes);
            items.push(item);
        }
        Some(Request {
            body: body.freeze(),
            items,
        })
    }

    /// Sends `req` once a slot is free, handling answers that arrive meanwhile.
    async fn dispatch(&mut self, req: Request) -> Result<()> {
        let permit = loop {
            tokio::select! {
                biased;
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    self.absorb(done.map_err(|e| Error::Internal(format!("bulk request task: {e}")))?).await?;
                }
                permit = self.limiter.acquire() => break permit,
            }
        };
        let cluster = self.cluster.clone();
        let gzip = self.cfg.gzip.unwrap_or(!self.cluster.local);
        self.stats.requests += 1;
        self.tasks.spawn(async move {
            let Request { body, items } = req;
            let payload = if gzip {
                match tokio::task::spawn_blocking(move || gzip_bytes(&body)).await {
                    Ok(Ok(b)) => b,
                    _ => {
                        permit.done(Outcome::Failed);
                        return Done::Failed(items, Error::Internal("gzip of a bulk body failed".into()), None, None);
                    }
                }
            } else {
                body
            };
            let sent = cluster
                .send(
                    Method::POST,
                    "/_bulk",
                    Some(Body {
                        bytes: payload,
                        content_type: "application/x-ndjson",
                        gzip,
                    }),
                )
                .await;
            match sent {
                Ok(Reply { status, body, .. }) if status.is_success() => match verdicts(&body, items.len()) {
                    Ok(v) => {
                        let pushed = v.iter().any(|v| matches!(v, Verdict::Retry(true)));
                        permit.done(if pushed { Outcome::BackPressure } else { Outcome::Ok });
                        Done::Answered(items, v)
                    }
                    Err(reason) => {
                        permit.done(Outcome::Failed);
                        Done::Failed(items, Error::connection(&cluster.shown, reason), None, None)
                    }
                },
                Ok(reply) => {
                    let code = reply.status.as_u16();
                    permit.done(if code == 429 || code == 503 {
                        Outcome::BackPressure
                    } else {
                        Outcome::Failed
                    });
                    let err = cluster.status_error(&Method::POST, "/_bulk", &reply);
                    Done::Failed(items, err, reply.retry_after, Some(code))
                }
                Err(e) => {
                    permit.done(Outcome::Failed);
                    Done::Failed(items, e, None, None)
                }
            }
        });
        Ok(())
    }

    /// Takes in one finished request: acknowledged items are done, refused
    /// ones become rejections, the rest wait for a retry.
    async fn absorb(&mut self, done: Done) -> Result<()> {
        match done {
            Done::Answered(items, verdicts) => {
                self.retrier.success();
                let mut pushed_back = false;
                let mut any_ok = false;
                for (mut item, verdict) in items.into_iter().zip(verdicts) {
                    match verdict {
                        Verdict::Done => any_ok = true,
                        Verdict::Refused(reason) => self.refused.push(self.rejection(&item, reason)),
                        Verdict::Retry(back_pressure) => {
                            pushed_back |= back_pressure;
                            item.attempts += 1;
                            self.requeue(item);
                        }
                    }
                }
                // Progress (some items accepted) keeps the pause before the
                // retries short; only answers that accept nothing lengthen it.
                // The request rate itself is the limiter's business.
                if any_ok {
                    self.backoff.success();
                    self.last_progress = Instant::now();
                }
                if pushed_back {
                    self.stats.back_pressure += 1;
                    self.pause_retries();
                }
            }
            Done::Failed(items, e, retry_after, status) => {
                if status == Some(400) {
                    // The server could not parse the request: its items are
                    // refused with the reason (and kept in dead letters),
                    // nothing is lost silently.
                    let reason = e.to_string();
                    for item in items {
                        self.refused.push(self.rejection(&item, reason.clone()));
                    }
                    return Ok(());
                }
                if status == Some(413) {
                    return Err(Error::config(
                        "sinks.bulk_bytes",
                        format!("{e}: the cluster refuses requests this large; lower bulk_bytes"),
                    ));
                }
                if !e.is_retryable() {
                    // Authentication, permissions, a missing endpoint: the
                    // run cannot go on, and no document is counted as sent.
                    return Err(e);
                }
                if let Some(after) = retry_after {
                    self.limiter.hold_off(after);
                    tracing::info!(stream = %self.stream, "{} asked to wait {:.1}s (Retry-After)", self.by, after.as_secs_f64());
                }
                for mut item in items {
                    item.attempts += 1;
                    self.requeue(item);
                }
                if matches!(status, Some(429 | 503)) {
                    // Back-pressure: the limiter slows down; the items go
                    // again after a short pause, as long as the cluster
                    // keeps accepting something.
                    self.stats.back_pressure += 1;
                    if let Some(limit) = self.give_up_after
                        && self.last_progress.elapsed() > limit
                    {
                        return Err(Error::connection(
                            &self.cluster.shown,
                            format!(
                                "{e} (nothing accepted for {}s; raise runtime.retry_give_up_s to wait longer)",
                                limit.as_secs()
                            ),
                        ));
                    }
                    self.pause_retries();
                    if let Some(after) = retry_after {
                        let until = Instant::now() + after;
                        if self.retry_not_before.is_none_or(|t| t < until) {
                            self.retry_not_before = Some(until);
                        }
                    }
                    return Ok(());
                }
                match self.retrier.failure() {
                    Next::Wait { delay, attempt, .. } => {
                        if attempt > 1 || retry_after.is_none() {
                            tracing::warn!(stream = %self.stream, error = %e, "{}: bulk request failed (attempt {attempt}); retrying its items in {:.1}s", self.by, delay.as_secs_f64());
                        }
                        let delay = retry_after.map_or(delay, |a| a.max(delay.min(Duration::from_millis(100))));
                        self.retry_not_before = Some(Instant::now() + delay);
                        self.retrier.waited();
                    }
                    Next::GiveUp { attempts, failing_for } => {
                        return Err(Error::connection(
                            &self.cluster.shown,
                            format!(
                                "{e} (gave up after {attempts} failed bulk requests over {}s; raise runtime.retry_give_up_s to wait longer)",
                                failing_for.as_secs()
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn requeue(&mut self, item: Item) {
        self.stats.retried_items += 1;
        // Own the bytes, so the request body they were cut from can go.
        let item = Item {
            bytes: Bytes::copy_from_slice(&item.bytes),
            ..item
        };
        self.retry_bytes += item.bytes.len();
        self.retry.push_back(item);
    }

    fn pause_retries(&mut self) {
        if let Next::Wait { delay, .. } = self.backoff.failure() {
            let until = Instant::now() + delay;
            if self.retry_not_before.is_none_or(|t| t < until) {
                self.retry_not_before = Some(until);
            }
        }
    }

    fn rejection(&self, item: &Item, reason: String) -> Rejection {
        Rejection {
            stream: self.stream.clone(),
            stage: Stage::Sink,
            by: self.by.clone(),
            origin: item.origin.clone(),
            line: item.line,
            reason,
            raw: Some(String::from_utf8_lossy(item.bytes.trim_ascii_end()).into_owned()),
            record: None,
        }
    }

    /// Sends what is ready (retries first); with `all`, also the request
    /// being filled, and waits until nothing is in flight or waiting.
    async fn pump(&mut self, all: bool) -> Result<()> {
        if all {
            self.cut();
        }
        loop {
            while self.retry_bytes > self.cfg.max_retry_bytes {
                // Retry memory is full: wait for answers before taking more.
                let Some(done) = self.tasks.join_next().await else {
                    break;
                };
                self.absorb(done.map_err(|e| Error::Internal(format!("bulk request task: {e}")))?)
                    .await?;
            }
            if let Some(req) = self.cut_retry() {
                self.dispatch(req).await?;
                continue;
            }
            // While retry memory is full, new documents wait for the retries.
            let over = self.retry_bytes > self.cfg.max_retry_bytes;
            if !over && let Some(req) = self.ready.pop_front() {
                self.dispatch(req).await?;
                continue;
            }
            if (!all && !over) || (self.tasks.is_empty() && self.retry.is_empty()) {
                return Ok(());
            }
            if self.tasks.is_empty() {
                // Only retries are left, waiting out their backoff.
                if let Some(t) = self.retry_not_before {
                    tokio::time::sleep_until(t.into()).await;
                }
                self.retry_not_before = None;
                continue;
            }
            let next_retry = self.retry_not_before.filter(|_| !self.retry.is_empty());
            tokio::select! {
                Some(done) = self.tasks.join_next() => {
                    self.absorb(done.map_err(|e| Error::Internal(format!("bulk request task: {e}")))?).await?;
                }
                _ = async {
                    match next_retry {
                        Some(t) => tokio::time::sleep_until(t.into()).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
    }
}

/// An item written into the request being filled: its byte range, origin and line.
type Filled = (std::ops::Range<usize>, Arc<str>, Option<u64>);

/// Freezes what `buf` holds into a request of `items`, leaving both empty.
fn take_request(buf: &mut BytesMut, items: &mut Vec<Filled>) -> Request {
    let body = buf.split().freeze();
    let items = items
        .drain(..)
        .map(|(r, origin, line)| Item {
            bytes: body.slice(r),
            origin,
            line,
            attempts: 0,
        })
        .collect();
    Request { body, items }
}

fn gzip_bytes(body: &[u8]) -> std::io::Result<Bytes> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), flate2::Compression::fast());
    enc.write_all(body)?;
    Ok(Bytes::from(enc.finish()?))
}

#[async_trait]
impl Sink for SearchStreamSink {
    async fn write(&mut self, batch: &Batch) -> Result<Vec<Rejection>> {
        let mut indexes = Vec::new();
        let bulk_docs = self.cfg.bulk_docs;
        let bulk_bytes = self.cfg.bulk_bytes;
        let fixed = self.encoder.fixed_index().is_some();
        let mut buf = std::mem::take(&mut self.buf);
        let mut items = std::mem::take(&mut self.items);
        let mut cut = Vec::new();
        let refused = self
            .encoder
            .encode(batch, &self.by, &mut buf, |range, index, line, buf| {
                if !fixed && !indexes.iter().any(|i: &String| i == index) {
                    indexes.push(index.to_string());
                }
                items.push((range, batch.origin.clone(), line));
                if items.len() >= bulk_docs || buf.len() >= bulk_bytes {
                    cut.push(take_request(buf, &mut items));
                }
            })?;
        self.buf = buf;
        self.items = items;
        for index in indexes {
            self.prepare(&index).await?;
        }
        self.ready.extend(cut);
        self.pump(false).await?;
        // Items the server refused come back from `take_refused` after the
        // flush, so each batch counts only its own rows here.
        Ok(refused)
    }

    async fn flush(&mut self) -> Result<()> {
        self.pump(true).await
    }

    fn pipeline_depth(&self) -> usize {
        PIPELINE_DEPTH
    }

    fn take_refused(&mut self) -> Vec<Rejection> {
        std::mem::take(&mut self.refused)
    }

    async fn finish(&mut self, complete: bool) -> Result<()> {
        let flushed = if complete { self.pump(true).await } else { Ok(()) };
        // Settings come back whatever happened, so a failed load does not
        // leave an index without refresh or replicas.
        for (index, before) in std::mem::take(&mut self.tuned) {
            let path = format!("/{}/_settings", segment(&index));
            match self.cluster.json(Method::PUT, &path, Some(&before)).await {
                Ok(_) => self.set_restore_marker(&format!("/{}", segment(&index)), None).await,
                Err(e) => tracing::warn!(index, error = %e, "could not restore the index settings"),
            }
            let _ = self
                .cluster
                .send(Method::POST, &format!("/{}/_refresh", segment(&index)), None)
                .await;
        }
        flushed?;
        if complete && let (Some(alias), Some(index)) = (&self.cfg.alias, self.encoder.fixed_index()) {
            let actions = json!({"actions": [
                {"remove": {"index": "*", "alias": alias, "must_exist": false}},
                {"add": {"index": index, "alias": alias}},
            ]});
            let reply = self
                .cluster
                .send(Method::POST, "/_aliases", Some(Body::json(&actions)))
                .await?;
            if !reply.status.is_success() {
                // Clusters without `must_exist` refuse the removal of an
                // alias that points nowhere: swap against its real holders.
                let holders = self
                    .cluster
                    .send(Method::GET, &format!("/_alias/{}", segment(alias)), None)
                    .await?;
                let mut list = Vec::new();
                if holders.status.is_success()
                    && let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&holders.body)
                {
                    for held in m.keys().filter(|k| **k != index) {
                        list.push(json!({"remove": {"index": held, "alias": alias}}));
                    }
                }
                list.push(json!({"add": {"index": index, "alias": alias}}));
                self.cluster
                    .json(Method::POST, "/_aliases", Some(&json!({"actions": list})))
                    .await?;
            }
            tracing::info!(alias, index, "alias now points at the new index");
        }
        tracing::debug!(
            stream = %self.stream,
            requests = self.stats.requests,
            retried_items = self.stats.retried_items,
            back_pressure = self.stats.back_pressure,
            limit = self.limiter.limit(),
            "bulk load finished"
        );
        if let Ok(path) = std::env::var("SLUICE_CONCURRENCY_LOG") {
            let lines: String = self
                .limiter
                .history()
                .iter()
                .map(|(t, l)| format!("{t:.3}\t{l}\n"))
                .collect();
            let _ = std::fs::write(path, lines);
        }
        Ok(())
    }
}

/// The index a search sink writes for `stream`, with template fields as
/// wildcards (`orders-{region}` reads back as `orders-*`).
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


#[cfg(test)]
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
