//! A stand-in for an Elasticsearch 7/8 or OpenSearch 2 cluster, speaking
//! their REST wire format over a small hand-rolled HTTP/1.1 server.
//!
//! The search connector's tests normally run against an in-memory
//! OpenSearch-compatible server, but that server cannot show what a busy
//! production cluster does: bulk answers where some items fail while the
//! rest succeed, storms of 429 rejections, 5xx answers, slow answers,
//! permanent mapping errors, and Elasticsearch's own `_pit` point-in-time
//! API. This module serves the endpoints the connector uses from an
//! in-memory model, injects those faults on demand ([`MockConfig`]) and
//! counts what happened ([`MockState`]), so that tests can assert, for
//! example, that no document was delivered twice.
//!
//! It is shared by the integration tests (`mod es_mock;`) and by the
//! `es_endpoint` example, which serves it on a fixed port for benchmarks;
//! `GET /_mock/stats` reports the counters over HTTP.
//!
//! Served: `GET /`; index create, get, exists and delete; `_settings`,
//! `_mapping`, `_refresh`, `_count`, `_bulk`, `_mget`, `_doc`, `_create`,
//! `_update`; `_search` with `pit`, `search_after`, `slice`, `scroll` and a
//! small query language (`match_all`, `match_none`, `term`, `terms`,
//! `range`, `exists`, `ids`, `bool`); point in time (`_pit` for
//! Elasticsearch, `_search/point_in_time` for OpenSearch); `_aliases`,
//! `_alias`; `_cat/indices`; `_cluster/health`. Hits are always ordered by
//! `_id`, whatever `sort` asks for, and carry `"sort": [_id]`.

#![allow(dead_code)]

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::io::{self, Read as _};
use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flate2::read::MultiGzDecoder;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// Which product the mock pretends to be.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Flavor {
    /// Elasticsearch 8.13: `_pit` point in time, `X-Elastic-Product` header.
    Elasticsearch,
    /// OpenSearch 2.11: `_search/point_in_time`.
    OpenSearch,
}

/// What the mock is and which faults it injects.
#[derive(Clone, Debug)]
pub struct MockConfig {
    pub flavor: Flavor,
    /// Probability that one bulk item is refused with status 429 and error
    /// type `es_rejected_execution_exception`.
    pub reject_429: f64,
    /// When set: a bulk request arriving while this many bulk requests are
    /// already being served is answered at once with HTTP 429 (whole
    /// request), body `{"error":{"type":"es_rejected_execution_exception",
    /// "reason":"rejected execution of coordinating operation"},"status":429}`.
    pub max_concurrent: Option<usize>,
    /// Time each accepted bulk request takes (sleep before answering).
    pub latency: Duration,
    /// Every Nth bulk request (1-based count of all bulk requests) answers
    /// HTTP 503 with an ES error body, writing nothing.
    pub fail_every: Option<u64>,
    /// When set, the first K bulk requests answer HTTP 429 with header
    /// `Retry-After: {secs}` and write nothing.
    pub retry_after_first: Option<(u64, u64)>, // (K, secs)
    /// Documents whose `_id` is in this set are refused permanently: status
    /// 400, error type `mapper_parsing_exception`, reason
    /// "failed to parse field [x]".
    pub poison_ids: HashSet<String>,
    /// Seed of the generator deciding which items `reject_429` refuses.
    pub seed: u64,
    /// Keep document bodies (false: only check that each is JSON and count
    /// the writes per `_id`, as a benchmark endpoint that must not be the
    /// bottleneck does; documents then read back as `{}`).
    pub keep_sources: bool,
    /// When set, every request must carry exactly this `Authorization`
    /// header value (`Basic …`, `ApiKey …`, `Bearer …`); others get 401
    /// with a `security_exception`, as a cluster with security enabled does.
    pub authorization: Option<String>,
    /// Every Nth search request (`_search`, scroll pages; 1-based count)
    /// answers HTTP 503 with an ES error body.
    pub fail_search_every: Option<u64>,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            flavor: Flavor::Elasticsearch,
            reject_429: 0.0,
            max_concurrent: None,
            latency: Duration::ZERO,
            fail_every: None,
            retry_after_first: None,
            poison_ids: HashSet::new(),
            seed: 1,
            keep_sources: true,
            authorization: None,
            fail_search_every: None,
        }
    }
}

// ---------------------------------------------------------------------------
// Server and state
// ---------------------------------------------------------------------------

/// A running mock cluster. It serves until the Tokio runtime that started
/// it shuts down.
pub struct MockServer {
    pub addr: SocketAddr,
    pub state: Arc<MockState>,
}

impl MockServer {
    /// Starts a server on 127.0.0.1 and a free port.
    pub async fn start(cfg: MockConfig) -> MockServer {
        match MockServer::start_on(cfg, 0).await {
            Ok(server) => server,
            Err(e) => panic!("cannot start the mock search server on 127.0.0.1: {e}"),
        }
    }

    /// Starts a server on 127.0.0.1:`port` (0 picks a free port).
    pub async fn start_on(cfg: MockConfig, port: u16) -> io::Result<MockServer> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(MockState::new(cfg));
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        let state = Arc::clone(&shared);
                        tokio::spawn(async move {
                            // A failing connection only ends itself.
                            let _ = serve_connection(state, stream).await;
                        });
                    }
                    // Out of file descriptors and the like: wait, go on.
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        });
        Ok(MockServer { addr, state })
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Everything the mock holds and counts; shared by all connections.
pub struct MockState {
    cfg: MockConfig,
    inner: Mutex<Inner>,
    bulk_requests: AtomicU64,
    rejected_requests: AtomicU64,
    gzip_requests: AtomicU64,
    search_requests: AtomicU64,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// The cluster's data, behind the state's mutex (never held across an
/// `.await`).
struct Inner {
    indices: BTreeMap<String, Index>,
    pits: HashMap<String, Pit>,
    scrolls: HashMap<String, Scroll>,
    /// Counter for point-in-time, scroll and index ids.
    contexts: u64,
    rng: Rng,
}

/// One stored document.
struct Doc {
    /// Shared, so that point-in-time and scroll snapshots cost a pointer.
    source: Arc<Value>,
    version: u64,
    seq_no: u64,
}

/// One index.
struct Index {
    uuid: String,
    /// Flat `index.*` settings without the `index.` prefix, values as
    /// strings (as Elasticsearch keeps them).
    settings: Map<String, Value>,
    mappings: Value,
    aliases: BTreeSet<String>,
    docs: BTreeMap<String, Doc>,
    /// Successful index/create/update items per `_id`.
    writes: HashMap<String, u64>,
    auto_id: u64,
    seq_no: u64,
}

/// Settings every index has; a `null` restores these.
const DEFAULT_SETTINGS: [(&str, &str); 2] = [("number_of_shards", "1"), ("number_of_replicas", "1")];

/// One document of a point-in-time or scroll snapshot.
struct SnapDoc {
    index: Arc<str>,
    id: String,
    source: Arc<Value>,
}

/// A point in time: the documents as they were when it was opened, in
/// `_id` order.
struct Pit {
    docs: Arc<Vec<SnapDoc>>,
    expires: Instant,
}

/// A scroll: the matching documents at its start and how far it has got.
struct Scroll {
    hits: Vec<SnapDoc>,
    pos: usize,
    size: usize,
    source: SourceFilter,
    total_as_int: bool,
    expires: Instant,
}

impl MockState {
    fn new(cfg: MockConfig) -> MockState {
        let rng = Rng::new(cfg.seed);
        MockState {
            cfg,
            inner: Mutex::new(Inner {
                indices: BTreeMap::new(),
                pits: HashMap::new(),
                scrolls: HashMap::new(),
                contexts: 0,
                rng,
            }),
            bulk_requests: AtomicU64::new(0),
            rejected_requests: AtomicU64::new(0),
            gzip_requests: AtomicU64::new(0),
            search_requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The configuration the server runs with.
    pub fn config(&self) -> &MockConfig {
        &self.cfg
    }

    /// Documents of an index (or of the one index an alias names):
    /// `_id` -> `_source`.
    pub fn docs(&self, index: &str) -> BTreeMap<String, Value> {
        let inner = self.lock();
        inner
            .lookup(index)
            .map(|(_, idx)| {
                idx.docs
                    .iter()
                    .map(|(id, d)| (id.clone(), (*d.source).clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many times each `_id` was successfully written (index, create,
    /// update) in an index; a value above 1 means a duplicate delivery.
    pub fn writes(&self, index: &str) -> HashMap<String, u64> {
        let inner = self.lock();
        inner
            .lookup(index)
            .map(|(_, idx)| idx.writes.clone())
            .unwrap_or_default()
    }

    /// All bulk requests received.
    pub fn bulk_requests(&self) -> u64 {
        self.bulk_requests.load(Ordering::SeqCst)
    }

    /// Bulk requests refused whole (429 or 503).
    pub fn rejected_requests(&self) -> u64 {
        self.rejected_requests.load(Ordering::SeqCst)
    }

    /// The highest number of accepted bulk requests served at once.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    /// Accepted bulk requests being served right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Bulk requests whose body was gzip-encoded.
    pub fn gzip_requests(&self) -> u64 {
        self.gzip_requests.load(Ordering::SeqCst)
    }

    /// The index's current settings: flat `index.*` keys without the
    /// prefix, values as strings (`{"number_of_replicas":"0", ...}`);
    /// `Null` when the index does not exist.
    pub fn settings(&self, index: &str) -> Value {
        let inner = self.lock();
        inner
            .lookup(index)
            .map_or(Value::Null, |(_, idx)| Value::Object(idx.settings.clone()))
    }

    /// The index's mappings; `Null` when the index does not exist.
    pub fn mappings(&self, index: &str) -> Value {
        let inner = self.lock();
        inner.lookup(index).map_or(Value::Null, |(_, idx)| idx.mappings.clone())
    }

    /// The aliases of an index.
    pub fn aliases(&self, index: &str) -> Vec<String> {
        let inner = self.lock();
        inner
            .indices
            .get(index)
            .map(|idx| idx.aliases.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Names of all indices.
    pub fn indices(&self) -> Vec<String> {
        self.lock().indices.keys().cloned().collect()
    }

    /// Stores a document directly (seed data for source tests); creates the
    /// index when needed. Not counted in [`MockState::writes`].
    pub fn put_doc(&self, index: &str, id: &str, source: Value) {
        let now = epoch_ms();
        let mut inner = self.lock();
        if !inner.indices.contains_key(index) {
            inner.create_index(index, now);
        }
        let Some(idx) = inner.indices.get_mut(index) else {
            return;
        };
        let seq_no = idx.next_seq_no();
        match idx.docs.get_mut(id) {
            Some(d) => {
                d.version += 1;
                d.seq_no = seq_no;
                d.source = Arc::new(source);
            }
            None => {
                let doc = Doc {
                    source: Arc::new(source),
                    version: 1,
                    seq_no,
                };
                idx.docs.insert(id.to_string(), doc);
            }
        }
    }

    /// The counters `GET /_mock/stats` answers with.
    fn stats_json(&self) -> Value {
        let inner = self.lock();
        let indices: Map<String, Value> = inner
            .indices
            .iter()
            .map(|(name, idx)| {
                let duplicates = idx.writes.values().filter(|&&n| n > 1).count();
                let writes: u64 = idx.writes.values().sum();
                // A lean endpoint keeps no documents: its ids are the documents.
                let docs = if self.cfg.keep_sources {
                    idx.docs.len()
                } else {
                    idx.writes.len()
                };
                let entry = json!({"docs": docs, "duplicates": duplicates, "writes": writes});
                (name.clone(), entry)
            })
            .collect();
        drop(inner);
        json!({
            "bulk_requests": self.bulk_requests(),
            "rejected_requests": self.rejected_requests(),
            "max_in_flight": self.max_in_flight(),
            "in_flight": self.in_flight(),
            "gzip_requests": self.gzip_requests(),
            "indices": indices,
        })
    }
}

impl Index {
    fn new(name: &str, uuid: String, now_ms: u64) -> Index {
        let mut settings = Map::new();
        for (key, value) in DEFAULT_SETTINGS {
            settings.insert(key.to_string(), Value::from(value));
        }
        settings.insert("provided_name".into(), Value::from(name));
        settings.insert("uuid".into(), Value::from(uuid.clone()));
        settings.insert("creation_date".into(), Value::from(now_ms.to_string()));
        Index {
            uuid,
            settings,
            mappings: Value::Object(Map::new()),
            aliases: BTreeSet::new(),
            docs: BTreeMap::new(),
            writes: HashMap::new(),
            auto_id: 0,
            seq_no: 0,
        }
    }

    fn next_seq_no(&mut self) -> u64 {
        let s = self.seq_no;
        self.seq_no += 1;
        s
    }

    /// A fresh id for a document sent without one.
    fn next_auto_id(&mut self) -> String {
        loop {
            self.auto_id += 1;
            let id = format!("auto-{}", self.auto_id);
            if !self.docs.contains_key(&id) {
                return id;
            }
        }
    }

    fn count_write(&mut self, id: &str) {
        match self.writes.get_mut(id) {
            Some(n) => *n += 1,
            None => {
                self.writes.insert(id.to_string(), 1);
            }
        }
    }

    /// `index` and `create` items.
    fn write_source(&mut self, index: String, kind: OpKind, id: Option<String>, body: Option<Value>) -> ItemResult {
        let source = match body {
            Some(v @ Value::Object(_)) => v,
            _ => {
                return ItemResult::failed(
                    index,
                    id,
                    400,
                    "mapper_parsing_exception",
                    "failed to parse, the document is not a JSON object",
                );
            }
        };
        let id = match id {
            Some(id) => id,
            None => self.next_auto_id(),
        };
        if kind == OpKind::Create
            && let Some(d) = self.docs.get(&id)
        {
            let reason = format!(
                "[{id}]: version conflict, document already exists (current version [{}])",
                d.version
            );
            return ItemResult::failed(index, Some(id), 409, "version_conflict_engine_exception", reason);
        }
        let seq_no = self.next_seq_no();
        let source = Arc::new(source);
        let (version, result, status) = match self.docs.get_mut(&id) {
            Some(d) => {
                d.version += 1;
                d.seq_no = seq_no;
                d.source = source;
                (d.version, "updated", 200)
            }
            None => {
                let doc = Doc {
                    source,
                    version: 1,
                    seq_no,
                };
                self.docs.insert(id.clone(), doc);
                (1, "created", 201)
            }
        };
        self.count_write(&id);
        ItemResult::Done {
            index,
            id,
            version,
            seq_no,
            result,
            status,
        }
    }

    /// `update` items: partial `doc` (merged), `doc_as_upsert`, `upsert`.
    fn update(&mut self, index: String, id: Option<String>, body: Option<Value>) -> ItemResult {
        let Some(id) = id else {
            return ItemResult::failed(
                index,
                None,
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: id is missing;",
            );
        };
        let Some(Value::Object(mut body)) = body else {
            return ItemResult::failed(
                index,
                Some(id),
                400,
                "x_content_parse_exception",
                "[1:1] the update body is not a JSON object",
            );
        };
        if body.contains_key("script") {
            return ItemResult::failed(
                index,
                Some(id),
                400,
                "illegal_argument_exception",
                "the mock server does not run scripts",
            );
        }
        let doc = body.remove("doc");
        let upsert = body.remove("upsert");
        let doc_as_upsert = body.get("doc_as_upsert").and_then(Value::as_bool).unwrap_or(false);
        if doc.is_none() && upsert.is_none() {
            return ItemResult::failed(
                index,
                Some(id),
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: script or doc is missing;",
            );
        }
        let seq_no = self.next_seq_no();
        let (version, seq, result, status) = match self.docs.get_mut(&id) {
            Some(d) => {
                let changed = match &doc {
                    Some(patch) => merge_into(Arc::make_mut(&mut d.source), patch),
                    None => false,
                };
                if changed {
                    d.version += 1;
                    d.seq_no = seq_no;
                    (d.version, seq_no, "updated", 200)
                } else {
                    (d.version, d.seq_no, "noop", 200)
                }
            }
            None => {
                let fresh = if doc_as_upsert { doc.or(upsert) } else { upsert };
                match fresh {
                    Some(source) => {
                        let doc = Doc {
                            source: Arc::new(source),
                            version: 1,
                            seq_no,
                        };
                        self.docs.insert(id.clone(), doc);
                        (1, seq_no, "created", 201)
                    }
                    None => {
                        let reason = format!("[{id}]: document missing");
                        return ItemResult::failed(index, Some(id), 404, "document_missing_exception", reason);
                    }
                }
            }
        };
        self.count_write(&id);
        ItemResult::Done {
            index,
            id,
            version,
            seq_no: seq,
            result,
            status,
        }
    }

    /// `delete` items; a missing document is `not_found`, not an error.
    fn delete(&mut self, index: String, id: Option<String>) -> ItemResult {
        let Some(id) = id else {
            return ItemResult::failed(
                index,
                None,
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: id is missing;",
            );
        };
        let seq_no = self.next_seq_no();
        match self.docs.remove(&id) {
            Some(d) => ItemResult::Done {
                index,
                id,
                version: d.version + 1,
                seq_no,
                result: "deleted",
                status: 200,
            },
            None => ItemResult::Done {
                index,
                id,
                version: 1,
                seq_no,
                result: "not_found",
                status: 404,
            },
        }
    }
}

/// Why an item could not reach an index.
struct ItemError {
    status: u16,
    kind: &'static str,
    reason: String,
}

impl ItemError {
    fn index_not_found(name: &str) -> ItemError {
        ItemError {
            status: 404,
            kind: "index_not_found_exception",
            reason: format!("no such index [{name}]"),
        }
    }
}

impl Inner {
    fn create_index(&mut self, name: &str, now_ms: u64) -> &mut Index {
        self.contexts += 1;
        let uuid = format!("{:016x}{:06x}", fnv1a(name.as_bytes()) ^ now_ms, self.contexts);
        self.indices
            .entry(name.to_string())
            .or_insert_with(|| Index::new(name, uuid, now_ms))
    }

    /// An index by name, or the one index an alias points to.
    fn lookup(&self, name: &str) -> Option<(&String, &Index)> {
        self.indices
            .get_key_value(name)
            .or_else(|| self.indices.iter().find(|(_, idx)| idx.aliases.contains(name)))
    }

    /// The concrete indices an expression names: comma-separated names,
    /// aliases, `*` wildcards, `_all`. A missing concrete name is an error
    /// (the name is returned); a wildcard may match nothing.
    fn resolve(&self, expr: &str) -> Result<Vec<String>, String> {
        let mut out = BTreeSet::new();
        for part in expr.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "_all" || part == "*" {
                out.extend(self.indices.keys().cloned());
            } else if part.contains('*') {
                for (name, idx) in &self.indices {
                    if glob(part, name) || idx.aliases.iter().any(|a| glob(part, a)) {
                        out.insert(name.clone());
                    }
                }
            } else if self.indices.contains_key(part) {
                out.insert(part.to_string());
            } else {
                let holders: Vec<&String> = self
                    .indices
                    .iter()
                    .filter(|(_, idx)| idx.aliases.contains(part))
                    .map(|(name, _)| name)
                    .collect();
                if holders.is_empty() {
                    return Err(part.to_string());
                }
                out.extend(holders.into_iter().cloned());
            }
        }
        Ok(out.into_iter().collect())
    }

    /// The index a bulk item writes to: the index itself, the single index
    /// an alias names, or a new index when `auto_create`.
    fn write_target(&mut self, name: &str, auto_create: bool, now_ms: u64) -> Result<String, ItemError> {
        if self.indices.contains_key(name) {
            return Ok(name.to_string());
        }
        let holders: Vec<String> = self
            .indices
            .iter()
            .filter(|(_, idx)| idx.aliases.contains(name))
            .map(|(n, _)| n.clone())
            .collect();
        match holders.len() {
            0 => {}
            1 => return Ok(holders[0].clone()),
            _ => {
                return Err(ItemError {
                    status: 400,
                    kind: "illegal_argument_exception",
                    reason: format!(
                        "no write index is defined for alias [{name}]. The write index may be explicitly \
                         disabled using is_write_index=false or the alias points to multiple indices \
                         without one being designated as a write index"
                    ),
                });
            }
        }
        if !auto_create {
            return Err(ItemError::index_not_found(name));
        }
        if let Err(reason) = validate_index_name(name) {
            return Err(ItemError {
                status: 400,
                kind: "invalid_index_name_exception",
                reason,
            });
        }
        self.create_index(name, now_ms);
        Ok(name.to_string())
    }

    /// Drops points in time and scrolls whose keep-alive has passed.
    fn expire(&mut self, now: Instant) {
        self.pits.retain(|_, p| p.expires > now);
        self.scrolls.retain(|_, s| s.expires > now);
    }

    /// The documents of `names` that `keep` accepts, in `_id` order (then
    /// index name), sharing their sources.
    fn snapshot(&self, names: &[String], keep: impl Fn(&str, &Value) -> bool) -> Vec<SnapDoc> {
        let mut out = Vec::new();
        for name in names {
            let Some(idx) = self.indices.get(name) else {
                continue;
            };
            let index: Arc<str> = Arc::from(name.as_str());
            for (id, d) in &idx.docs {
                if keep(id.as_str(), d.source.as_ref()) {
                    out.push(SnapDoc {
                        index: Arc::clone(&index),
                        id: id.clone(),
                        source: Arc::clone(&d.source),
                    });
                }
            }
        }
        if names.len() > 1 {
            out.sort_by(|a, b| a.id.cmp(&b.id).then_with(|| a.index.cmp(&b.index)));
        }
        out
    }

    /// Every document of `names` as (`_id`, `_source`).
    fn iter_docs<'a>(&'a self, names: &'a [String]) -> impl Iterator<Item = (&'a str, &'a Value)> + 'a {
        names.iter().flat_map(move |name| {
            self.indices
                .get(name)
                .into_iter()
                .flat_map(|idx| idx.docs.iter().map(|(id, d)| (id.as_str(), d.source.as_ref())))
        })
    }

    /// Applies one bulk (or single-document) operation. With `faults`, the
    /// poison ids and the random 429s of the configuration apply.
    fn apply_op(
        &mut self,
        cfg: &MockConfig,
        op: BulkOp,
        default_index: Option<&str>,
        faults: bool,
        now_ms: u64,
    ) -> ItemResult {
        let BulkOp { kind, index, id, body } = op;
        let Some(target) = index.or_else(|| default_index.map(str::to_string)) else {
            return ItemResult::failed(
                String::new(),
                id,
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: index is missing;",
            );
        };
        let name = match self.write_target(&target, kind != OpKind::Delete, now_ms) {
            Ok(name) => name,
            Err(e) => return ItemResult::failed(target, id, e.status, e.kind, e.reason),
        };
        if faults {
            if kind != OpKind::Delete && id.as_ref().is_some_and(|id| cfg.poison_ids.contains(id)) {
                return ItemResult::failed(name, id, 400, "mapper_parsing_exception", "failed to parse field [x]");
            }
            if cfg.reject_429 > 0.0 && self.rng.next_f64() < cfg.reject_429 {
                return ItemResult::failed(
                    name,
                    id,
                    429,
                    "es_rejected_execution_exception",
                    "rejected execution of primary operation [shard_detail=[mock][0][P], \
                     shard_queue_capacity=200] on EsThreadPoolExecutor[name = mock/write]",
                );
            }
        }
        let Some(idx) = self.indices.get_mut(&name) else {
            return ItemResult::failed(
                name.clone(),
                id,
                404,
                "index_not_found_exception",
                format!("no such index [{name}]"),
            );
        };
        match kind {
            OpKind::Index | OpKind::Create => idx.write_source(name, kind, id, body),
            OpKind::Update => idx.update(name, id, body),
            OpKind::Delete => idx.delete(name, id),
        }
    }
}

// ---------------------------------------------------------------------------
// Deterministic random numbers
// ---------------------------------------------------------------------------

/// xorshift64*: small, fast, and the same sequence for the same seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // splitmix64 spreads small seeds over the whole state; xorshift
        // needs a state other than zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

// ---------------------------------------------------------------------------
// HTTP/1.1
// ---------------------------------------------------------------------------

/// Largest request body accepted (after de-chunking, before gunzip).
const MAX_BODY: usize = 512 * 1024 * 1024;
/// Largest request line plus headers accepted.
const MAX_HEAD: usize = 1024 * 1024;

/// One parsed request.
struct Request {
    method: String,
    /// The request target as sent, for error messages.
    target: String,
    /// The path without the query string (still percent-encoded).
    path: String,
    query: HashMap<String, String>,
    /// Lower-case names; repeated headers joined with ", ".
    headers: HashMap<String, String>,
    /// The body, already gunzipped when it came gzip-encoded.
    body: Vec<u8>,
    gzip: bool,
    /// Set when the body could not be decoded.
    body_error: Option<String>,
    /// Whether the connection closes after the answer.
    close: bool,
    http10: bool,
}

enum Incoming {
    /// The peer closed the connection (between or within requests).
    Closed,
    /// Not HTTP: answered with 400, then the connection closes.
    Malformed(String),
    Request(Request),
}

/// One answer.
struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
    headers: Vec<(&'static str, String)>,
}

impl Response {
    fn json(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: "application/json",
            body,
            headers: Vec::new(),
        }
    }

    fn value(status: u16, v: &Value) -> Response {
        Response::json(status, v.to_string())
    }

    fn text(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=UTF-8",
            body,
            headers: Vec::new(),
        }
    }

    fn header(mut self, name: &'static str, value: String) -> Response {
        self.headers.push((name, value));
        self
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// Serves one connection: requests one after the other until the peer
/// closes or asks to close.
async fn serve_connection(state: Arc<MockState>, stream: TcpStream) -> io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(256 * 1024, rd);
    let flavor = state.cfg.flavor;
    loop {
        let req = match read_request(&mut rd, &mut wr).await? {
            Incoming::Closed => return Ok(()),
            Incoming::Malformed(reason) => {
                let resp = es_error(400, "illegal_argument_exception", &reason);
                write_response(&mut wr, flavor, &resp, false, true, false).await?;
                let _ = wr.shutdown().await;
                return Ok(());
            }
            Incoming::Request(req) => req,
        };
        let resp = route(&state, &req).await;
        let head_only = req.method == "HEAD";
        write_response(&mut wr, flavor, &resp, head_only, req.close, req.http10).await?;
        if req.close {
            let _ = wr.shutdown().await;
            return Ok(());
        }
    }
}

async fn read_line(rd: &mut BufReader<OwnedReadHalf>, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.clear();
    rd.read_until(b'\n', buf).await
}

/// A line without its trailing CR/LF.
fn trim_eol(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && (line[end - 1] == b'\n' || line[end - 1] == b'\r') {
        end -= 1;
    }
    &line[..end]
}

/// Reads one request: request line, headers, body (`Content-Length` or
/// chunked), gunzipping a `Content-Encoding: gzip` body.
async fn read_request(rd: &mut BufReader<OwnedReadHalf>, wr: &mut OwnedWriteHalf) -> io::Result<Incoming> {
    let mut line = Vec::with_capacity(256);
    // Empty lines between requests are allowed.
    loop {
        if read_line(rd, &mut line).await? == 0 {
            return Ok(Incoming::Closed);
        }
        if !trim_eol(&line).is_empty() {
            break;
        }
    }
    let request_line = String::from_utf8_lossy(trim_eol(&line)).into_owned();
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Ok(Incoming::Malformed(format!("malformed request line [{request_line}]")));
    };
    let version = parts.next().unwrap_or("HTTP/1.0");
    let http10 = version.eq_ignore_ascii_case("HTTP/1.0");
    let method = method.to_ascii_uppercase();
    let target = target.to_string();

    let mut headers: HashMap<String, String> = HashMap::new();
    let mut head_bytes = line.len();
    loop {
        let n = read_line(rd, &mut line).await?;
        if n == 0 {
            return Ok(Incoming::Closed);
        }
        head_bytes += n;
        if head_bytes > MAX_HEAD {
            return Ok(Incoming::Malformed("the request headers are too large".into()));
        }
        let raw = trim_eol(&line);
        if raw.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(raw);
        let Some((name, value)) = text.split_once(':') else {
            return Ok(Incoming::Malformed(format!("malformed header line [{text}]")));
        };
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim().to_string();
        match headers.get_mut(&name) {
            Some(existing) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            None => {
                headers.insert(name, value);
            }
        }
    }

    if headers
        .get("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        wr.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }

    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        loop {
            if read_line(rd, &mut line).await? == 0 {
                return Ok(Incoming::Closed);
            }
            let size_text = String::from_utf8_lossy(trim_eol(&line)).into_owned();
            let size_hex = size_text.split(';').next().unwrap_or("").trim();
            let Ok(size) = usize::from_str_radix(size_hex, 16) else {
                return Ok(Incoming::Malformed(format!("bad chunk size [{size_text}]")));
            };
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    if read_line(rd, &mut line).await? == 0 || trim_eol(&line).is_empty() {
                        break;
                    }
                }
                break;
            }
            if body.len() + size > MAX_BODY {
                return Ok(Incoming::Malformed("the request body is too large".into()));
            }
            let start = body.len();
            body.resize(start + size, 0);
            rd.read_exact(&mut body[start..]).await?;
            // The CRLF that ends the chunk.
            read_line(rd, &mut line).await?;
        }
    } else if let Some(len) = headers.get("content-length") {
        let Ok(len) = len.trim().parse::<usize>() else {
            return Ok(Incoming::Malformed(format!("bad Content-Length [{len}]")));
        };
        if len > MAX_BODY {
            return Ok(Incoming::Malformed("the request body is too large".into()));
        }
        body.resize(len, 0);
        rd.read_exact(&mut body).await?;
    }

    let mut gzip = false;
    let mut body_error = None;
    if let Some(encoding) = headers.get("content-encoding") {
        match encoding.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => {}
            "gzip" | "x-gzip" => {
                gzip = true;
                if !body.is_empty() {
                    let mut plain = Vec::with_capacity(body.len().saturating_mul(4));
                    let decoded = MultiGzDecoder::new(body.as_slice()).read_to_end(&mut plain);
                    match decoded {
                        Ok(_) => body = plain,
                        Err(e) => body_error = Some(format!("cannot decompress the gzip request body: {e}")),
                    }
                }
            }
            other => body_error = Some(format!("unsupported Content-Encoding [{other}]")),
        }
    }

    let connection = headers
        .get("connection")
        .map(|v| v.to_ascii_lowercase())
        .unwrap_or_default();
    let close = if http10 {
        !connection.contains("keep-alive")
    } else {
        connection.contains("close")
    };
    let (path, query) = split_target(&target);
    Ok(Incoming::Request(Request {
        method,
        target,
        path,
        query,
        headers,
        body,
        gzip,
        body_error,
        close,
        http10,
    }))
}

/// Splits a request target into its path and decoded query parameters.
fn split_target(target: &str) -> (String, HashMap<String, String>) {
    let mut t = target;
    // Absolute form, as proxies send it.
    if let Some(rest) = t.strip_prefix("http://").or_else(|| t.strip_prefix("https://")) {
        t = rest.find('/').map_or("/", |i| &rest[i..]);
    }
    let (path, qs) = t.split_once('?').unwrap_or((t, ""));
    let mut query = HashMap::new();
    for pair in qs.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        query.insert(pct_decode(k, true), pct_decode(v, true));
    }
    (path.to_string(), query)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decoding; `+` is a space in query strings.
fn pct_decode(s: &str, plus_is_space: bool) -> String {
    if !s.bytes().any(|b| b == b'%' || (plus_is_space && b == b'+')) {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2]))
        {
            out.push((hi << 4) | lo);
            i += 3;
            continue;
        }
        out.push(if plus_is_space && b == b'+' { b' ' } else { b });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn write_response(
    wr: &mut OwnedWriteHalf,
    flavor: Flavor,
    resp: &Response,
    head_only: bool,
    close: bool,
    http10: bool,
) -> io::Result<()> {
    let body_len = if head_only { 0 } else { resp.body.len() };
    let mut head = String::with_capacity(256);
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        resp.status,
        reason_phrase(resp.status),
        resp.content_type,
        body_len
    );
    if flavor == Flavor::Elasticsearch {
        head.push_str("X-Elastic-Product: Elasticsearch\r\n");
    }
    for (name, value) in &resp.headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    if close {
        head.push_str("Connection: close\r\n");
    } else if http10 {
        head.push_str("Connection: keep-alive\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    if !head_only {
        bytes.extend_from_slice(resp.body.as_bytes());
    }
    wr.write_all(&bytes).await
}

// ---------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------

async fn route(state: &MockState, req: &Request) -> Response {
    if let Some(expected) = &state.cfg.authorization
        && req.headers.get("authorization") != Some(expected)
    {
        let reason = match req.headers.get("authorization") {
            None => "missing authentication credentials for REST request",
            Some(_) => "unable to authenticate user for REST request",
        };
        let mut response = es_error(401, "security_exception", reason);
        response
            .headers
            .push(("WWW-Authenticate", "Basic realm=\"security\"".into()));
        return response;
    }
    if let Some(reason) = &req.body_error {
        return es_error(400, "parse_exception", reason);
    }
    if let Some(n) = state.cfg.fail_search_every
        && req.path.contains("_search")
        && req.method != "DELETE"
        && !req.path.contains("point_in_time")
    {
        let count = state.search_requests.fetch_add(1, Ordering::SeqCst) + 1;
        if count.is_multiple_of(n) {
            return es_error(503, "search_phase_execution_exception", "all shards failed");
        }
    }
    let segments: Vec<String> = req
        .path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| pct_decode(s, false))
        .collect();
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let opensearch = state.cfg.flavor == Flavor::OpenSearch;
    match (req.method.as_str(), seg.as_slice()) {
        ("GET" | "HEAD", []) => state.root_info(),
        ("GET", ["_mock", "stats"]) => Response::value(200, &state.stats_json()),

        ("POST" | "PUT", ["_bulk"]) => handle_bulk(state, req, None).await,
        ("POST" | "PUT", [index, "_bulk"]) => handle_bulk(state, req, Some(*index)).await,

        ("GET" | "POST", ["_mget"]) => state.mget(req, None),
        ("GET" | "POST", [index, "_mget"]) => state.mget(req, Some(*index)),

        ("GET" | "POST", ["_search"]) => state.search(req, None),
        ("GET" | "POST", ["_search", "scroll"]) => state.scroll_next(req, None),
        ("GET" | "POST", ["_search", "scroll", id]) => state.scroll_next(req, Some(*id)),
        ("DELETE", ["_search", "scroll"]) => state.clear_scroll(req, None),
        ("DELETE", ["_search", "scroll", id]) => state.clear_scroll(req, Some(*id)),

        // Point in time: each flavor has only its own API.
        ("POST", [index, "_pit"]) if !opensearch => state.open_pit(req, index),
        ("DELETE", ["_pit"]) if !opensearch => state.close_pit_es(req),
        ("POST", [index, "_search", "point_in_time"]) if opensearch => state.open_pit(req, index),
        ("DELETE", ["_search", "point_in_time"]) if opensearch => state.close_pit_os(req, false),
        ("DELETE", ["_search", "point_in_time", "_all"]) if opensearch => state.close_pit_os(req, true),

        ("GET" | "POST", [index, "_search"]) => state.search(req, Some(*index)),

        ("POST", ["_aliases"]) => state.update_aliases(req),
        ("GET" | "HEAD", ["_alias"]) => state.get_alias(None, None),
        ("GET" | "HEAD", ["_alias", name]) => state.get_alias(None, Some(*name)),
        ("GET" | "HEAD", [index, "_alias"]) => state.get_alias(Some(*index), None),
        ("GET" | "HEAD", [index, "_alias", name]) => state.get_alias(Some(*index), Some(*name)),
        ("PUT" | "POST", [index, "_alias" | "_aliases", name]) => state.put_alias(index, name),
        ("DELETE", [index, "_alias" | "_aliases", name]) => state.delete_alias(index, name),

        ("GET", ["_cat", "indices"]) => state.cat_indices(req, None),
        ("GET", ["_cat", "indices", pattern]) => state.cat_indices(req, Some(*pattern)),
        ("GET", ["_cluster", "health", ..]) => state.cluster_health(),

        ("GET" | "POST", ["_refresh"]) => state.refresh(None),
        ("GET" | "POST", [index, "_refresh"]) => state.refresh(Some(*index)),
        ("GET" | "POST", ["_count"]) => state.count(req, None),
        ("GET" | "POST", [index, "_count"]) => state.count(req, Some(*index)),
        ("GET", [index, "_settings"]) => state.get_settings(req, index),
        ("PUT", [index, "_settings"]) => state.put_settings(req, index),
        ("GET", [index, "_mapping" | "_mappings"]) => state.get_mapping(index),
        ("PUT" | "POST", [index, "_mapping" | "_mappings"]) => state.put_mapping(req, index),

        ("GET" | "HEAD", [index, "_doc", id]) => state.get_doc(index, id),
        ("PUT" | "POST", [index, "_doc", id]) => state.single_write(req, index, Some(*id), OpKind::Index),
        ("POST", [index, "_doc"]) => state.single_write(req, index, None, OpKind::Index),
        ("PUT" | "POST", [index, "_create", id]) => state.single_write(req, index, Some(*id), OpKind::Create),
        ("POST", [index, "_update", id]) => state.single_write(req, index, Some(*id), OpKind::Update),
        ("DELETE", [index, "_doc", id]) => state.single_write(req, index, Some(*id), OpKind::Delete),

        ("HEAD", [index]) if !index.starts_with('_') => state.index_exists(index),
        ("GET", [index]) if !index.starts_with('_') => state.get_index(req, index),
        ("PUT", [index]) if !index.starts_with('_') => state.create_index(req, index),
        ("DELETE", [index]) if !index.starts_with('_') => state.delete_index(index),

        _ => no_handler(req),
    }
}

fn no_handler(req: &Request) -> Response {
    let body = json!({
        "error": format!("no handler found for uri [{}] and method [{}]", req.target, req.method),
        "status": 400,
    });
    Response::value(400, &body)
}

/// An Elasticsearch error body: `{"error":{"root_cause":[..],"type",
/// "reason"},"status"}`.
fn es_error_at(status: u16, kind: &str, reason: &str, index: Option<&str>) -> Response {
    let mut cause = json!({"type": kind, "reason": reason});
    if let Some(index) = index {
        cause["index_uuid"] = Value::from("_na_");
        cause["index"] = Value::from(index);
    }
    let mut error = cause.clone();
    error["root_cause"] = Value::Array(vec![cause]);
    Response::value(status, &json!({"error": error, "status": status}))
}

fn es_error(status: u16, kind: &str, reason: &str) -> Response {
    es_error_at(status, kind, reason, None)
}

fn index_not_found(name: &str) -> Response {
    let cause = json!({
        "type": "index_not_found_exception",
        "reason": format!("no such index [{name}]"),
        "resource.type": "index_or_alias",
        "resource.id": name,
        "index_uuid": "_na_",
        "index": name,
    });
    let mut error = cause.clone();
    error["root_cause"] = Value::Array(vec![cause]);
    Response::value(404, &json!({"error": error, "status": 404}))
}

fn acknowledged() -> Response {
    Response::value(200, &json!({"acknowledged": true}))
}

fn bad_time_value(what: &str, value: &str) -> Response {
    es_error(
        400,
        "illegal_argument_exception",
        &format!(
            "failed to parse setting [{what}] with value [{value}] as a time value: unit is missing or unrecognized"
        ),
    )
}

/// The JSON body; an empty body is `{}`.
fn parse_body(req: &Request) -> Result<Value, Response> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(&req.body).map_err(|e| {
        es_error(
            400,
            "x_content_parse_exception",
            &format!("[{}:{}] the request body is not valid JSON: {e}", e.line(), e.column()),
        )
    })
}

// ---------------------------------------------------------------------------
// Bulk
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpKind {
    Index,
    Create,
    Update,
    Delete,
}

impl OpKind {
    fn name(self) -> &'static str {
        match self {
            OpKind::Index => "index",
            OpKind::Create => "create",
            OpKind::Update => "update",
            OpKind::Delete => "delete",
        }
    }
}

/// One action of a bulk body with its source line.
struct BulkOp {
    kind: OpKind,
    index: Option<String>,
    id: Option<String>,
    body: Option<Value>,
}

/// The outcome of one item.
enum ItemResult {
    Done {
        index: String,
        id: String,
        version: u64,
        seq_no: u64,
        result: &'static str,
        status: u16,
    },
    Failed {
        index: String,
        id: Option<String>,
        status: u16,
        kind: &'static str,
        reason: String,
    },
}

impl ItemResult {
    fn failed(
        index: String,
        id: Option<String>,
        status: u16,
        kind: &'static str,
        reason: impl Into<String>,
    ) -> ItemResult {
        ItemResult::Failed {
            index,
            id,
            status,
            kind,
            reason: reason.into(),
        }
    }

    fn is_error(&self) -> bool {
        matches!(self, ItemResult::Failed { .. })
    }

    /// The object under the action name in a bulk item (also the answer of
    /// a single-document write).
    fn render(&self, out: &mut String) {
        match self {
            ItemResult::Done {
                index,
                id,
                version,
                seq_no,
                result,
                status,
            } => {
                out.push_str("{\"_index\":");
                push_json_str(out, index);
                out.push_str(",\"_id\":");
                push_json_str(out, id);
                let shards = if *result == "noop" {
                    "0,\"successful\":0"
                } else {
                    "2,\"successful\":1"
                };
                let _ = write!(
                    out,
                    ",\"_version\":{version},\"result\":\"{result}\",\"_shards\":{{\"total\":{shards},\"failed\":0}},\
                     \"_seq_no\":{seq_no},\"_primary_term\":1,\"status\":{status}}}"
                );
            }
            ItemResult::Failed {
                index,
                id,
                status,
                kind,
                reason,
            } => {
                out.push_str("{\"_index\":");
                push_json_str(out, index);
                out.push_str(",\"_id\":");
                match id {
                    Some(id) => push_json_str(out, id),
                    None => out.push_str("null"),
                }
                let _ = write!(out, ",\"status\":{status},\"error\":{{\"type\":\"{kind}\",\"reason\":");
                push_json_str(out, reason);
                out.push_str(",\"index\":");
                push_json_str(out, index);
                out.push_str("}}");
            }
        }
    }
}

/// Decrements the in-flight count however the request ends.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `POST /_bulk`, `POST /{index}/_bulk`.
async fn handle_bulk(state: &MockState, req: &Request, default_index: Option<&str>) -> Response {
    let started = Instant::now();
    let cfg = &state.cfg;
    let n = state.bulk_requests.fetch_add(1, Ordering::SeqCst) + 1;
    if req.gzip {
        state.gzip_requests.fetch_add(1, Ordering::SeqCst);
    }

    // Whole-request faults: nothing is written.
    if cfg.fail_every.is_some_and(|every| every > 0 && n.is_multiple_of(every)) {
        state.rejected_requests.fetch_add(1, Ordering::SeqCst);
        return es_error(
            503,
            "cluster_block_exception",
            "blocked by: [SERVICE_UNAVAILABLE/2/no master];",
        );
    }
    if let Some((first, secs)) = cfg.retry_after_first
        && n <= first
    {
        state.rejected_requests.fetch_add(1, Ordering::SeqCst);
        return es_error(
            429,
            "es_rejected_execution_exception",
            "rejected execution of coordinating operation",
        )
        .header("Retry-After", secs.to_string());
    }
    let accepted = loop {
        let current = state.in_flight.load(Ordering::SeqCst);
        if cfg.max_concurrent.is_some_and(|max| current >= max) {
            break None;
        }
        if state
            .in_flight
            .compare_exchange(current, current + 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            break Some(current + 1);
        }
    };
    let Some(now_serving) = accepted else {
        state.rejected_requests.fetch_add(1, Ordering::SeqCst);
        return es_error(
            429,
            "es_rejected_execution_exception",
            "rejected execution of coordinating operation",
        );
    };
    let _guard = InFlight(&state.in_flight);
    state.max_in_flight.fetch_max(now_serving, Ordering::SeqCst);

    if !cfg.keep_sources && cfg.reject_429 == 0.0 && cfg.poison_ids.is_empty() {
        if !cfg.latency.is_zero() {
            tokio::time::sleep(cfg.latency).await;
        }
        return state.count_bulk(&req.body, default_index, started);
    }
    let ops = match parse_bulk(&req.body, cfg.keep_sources) {
        Ok(ops) => ops,
        Err(resp) => return resp,
    };
    if !cfg.latency.is_zero() {
        tokio::time::sleep(cfg.latency).await;
    }
    let (errors, items) = state.apply_bulk(ops, default_index);
    let took = started.elapsed().as_millis();
    let mut body = String::with_capacity(items.len() + 64);
    let _ = write!(body, "{{\"took\":{took},\"errors\":{errors},\"items\":[");
    body.push_str(&items);
    body.push_str("]}");
    Response::json(200, body)
}

fn bulk_line_error(line: usize, e: &serde_json::Error) -> Response {
    es_error(
        400,
        "x_content_parse_exception",
        &format!(
            "[{line}:{}] line [{line}] of the bulk body is not valid JSON: {e}",
            e.column()
        ),
    )
}

/// Parses an NDJSON bulk body into operations; any malformed line fails
/// the whole request.
fn parse_bulk(body: &[u8], keep_sources: bool) -> Result<Vec<BulkOp>, Response> {
    let mut ops = Vec::new();
    let mut lines = body
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace));
    while let Some((n, line)) = lines.next() {
        let line_no = n + 1;
        let action: Value = serde_json::from_slice(line).map_err(|e| bulk_line_error(line_no, &e))?;
        let Value::Object(action) = action else {
            return Err(es_error(
                400,
                "illegal_argument_exception",
                &format!("Malformed action/metadata line [{line_no}], expected START_OBJECT"),
            ));
        };
        let mut entries = action.into_iter();
        let (Some((name, meta)), None) = (entries.next(), entries.next()) else {
            return Err(es_error(
                400,
                "illegal_argument_exception",
                &format!("Malformed action/metadata line [{line_no}], expected exactly one action"),
            ));
        };
        let kind = match name.as_str() {
            "index" => OpKind::Index,
            "create" => OpKind::Create,
            "update" => OpKind::Update,
            "delete" => OpKind::Delete,
            other => {
                return Err(es_error(
                    400,
                    "illegal_argument_exception",
                    &format!(
                        "Malformed action/metadata line [{line_no}], expected field [create], [delete], \
                         [index] or [update] but found [{other}]"
                    ),
                ));
            }
        };
        let Value::Object(mut meta) = meta else {
            return Err(es_error(
                400,
                "illegal_argument_exception",
                &format!("Malformed action/metadata line [{line_no}], expected START_OBJECT"),
            ));
        };
        let index = take_string(&mut meta, "_index");
        let id = take_string(&mut meta, "_id");
        let body = if kind == OpKind::Delete {
            None
        } else {
            let Some((m, source)) = lines.next() else {
                return Err(es_error(
                    400,
                    "action_request_validation_exception",
                    &format!(
                        "Validation Failed: 1: the [{}] action on line [{line_no}] has no source line;",
                        kind.name()
                    ),
                ));
            };
            if keep_sources || kind == OpKind::Update {
                Some(serde_json::from_slice::<Value>(source).map_err(|e| bulk_line_error(m + 1, &e))?)
            } else {
                serde_json::from_slice::<serde::de::IgnoredAny>(source).map_err(|e| bulk_line_error(m + 1, &e))?;
                Some(Value::Object(Map::new()))
            }
        };
        ops.push(BulkOp { kind, index, id, body });
    }
    if ops.is_empty() {
        return Err(es_error(
            400,
            "action_request_validation_exception",
            "Validation Failed: 1: no requests added;",
        ));
    }
    Ok(ops)
}

/// A metadata field as a string (numbers are accepted as their text).
fn take_string(meta: &mut Map<String, Value>, key: &str) -> Option<String> {
    match meta.remove(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    }
}

impl MockState {
    /// Applies parsed bulk operations under the lock; returns whether any
    /// item failed and the rendered `items` array content.
    fn apply_bulk(&self, ops: Vec<BulkOp>, default_index: Option<&str>) -> (bool, String) {
        let mut items = String::with_capacity(ops.len() * 180);
        let mut errors = false;
        let now_ms = epoch_ms();
        let mut inner = self.lock();
        for (i, op) in ops.into_iter().enumerate() {
            if i > 0 {
                items.push(',');
            }
            let kind = op.kind;
            let result = inner.apply_op(&self.cfg, op, default_index, true, now_ms);
            errors |= result.is_error();
            items.push_str("{\"");
            items.push_str(kind.name());
            items.push_str("\":");
            result.render(&mut items);
            items.push('}');
        }
        (errors, items)
    }

    /// A bulk request of a lean endpoint without item faults: index and
    /// create items are checked to be JSON and counted per `_id`, nothing
    /// is kept, so a benchmark measures its client, not this server.
    fn count_bulk(&self, body: &[u8], default_index: Option<&str>, started: Instant) -> Response {
        #[derive(serde::Deserialize)]
        struct Meta<'a> {
            #[serde(rename = "_index", borrow)]
            index: Option<std::borrow::Cow<'a, str>>,
            #[serde(rename = "_id", borrow)]
            id: Option<std::borrow::Cow<'a, str>>,
        }
        #[derive(serde::Deserialize)]
        struct Action<'a> {
            #[serde(borrow)]
            index: Option<Meta<'a>>,
            #[serde(borrow)]
            create: Option<Meta<'a>>,
        }
        let mut lines = body
            .split(|&b| b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace));
        let mut items = String::with_capacity(body.len() / 3);
        let now_ms = epoch_ms();
        let mut inner = self.lock();
        let mut n = 0usize;
        while let Some(line) = lines.next() {
            let Ok(action) = serde_json::from_slice::<Action<'_>>(line) else {
                return es_error(400, "x_content_parse_exception", "malformed action line");
            };
            let (kind, meta) = match (action.index, action.create) {
                (Some(m), _) => ("index", m),
                (None, Some(m)) => ("create", m),
                _ => {
                    return es_error(
                        400,
                        "illegal_argument_exception",
                        "the lean endpoint takes index and create",
                    );
                }
            };
            let Some(doc) = lines.next() else {
                return es_error(
                    400,
                    "action_request_validation_exception",
                    "an action has no source line",
                );
            };
            if serde_json::from_slice::<serde::de::IgnoredAny>(doc).is_err() {
                return es_error(400, "x_content_parse_exception", "a document is not JSON");
            }
            let Some(name) = meta.index.as_deref().or(default_index) else {
                return es_error(400, "action_request_validation_exception", "index is missing");
            };
            let target = match inner.write_target(name, true, now_ms) {
                Ok(t) => t,
                Err(e) => return es_error(e.status, e.kind, &e.reason),
            };
            let idx = inner.indices.get_mut(&target).expect("write target exists");
            let id = match meta.id {
                Some(id) => id.into_owned(),
                None => {
                    idx.auto_id += 1;
                    format!("auto-{}", idx.auto_id)
                }
            };
            let count = match idx.writes.get_mut(&id) {
                Some(c) => {
                    *c += 1;
                    *c
                }
                None => {
                    idx.writes.insert(id.clone(), 1);
                    1
                }
            };
            if n > 0 {
                items.push(',');
            }
            n += 1;
            let (result, status) = if count == 1 { ("created", 201) } else { ("updated", 200) };
            let _ = write!(
                items,
                "{{\"{kind}\":{{\"_index\":\"{target}\",\"_id\":{},\"_version\":{count},\"result\":\"{result}\",\"status\":{status}}}}}",
                Value::String(id)
            );
        }
        drop(inner);
        let took = started.elapsed().as_millis();
        Response::json(200, format!("{{\"took\":{took},\"errors\":false,\"items\":[{items}]}}"))
    }

    /// `PUT /{index}/_doc/{id}`, `POST /{index}/_doc`, `_create`, `_update`,
    /// `DELETE /{index}/_doc/{id}`: like one bulk item, without faults.
    fn single_write(&self, req: &Request, index: &str, id: Option<&str>, kind: OpKind) -> Response {
        let body = if kind == OpKind::Delete {
            None
        } else {
            match parse_body(req) {
                Ok(v) => Some(v),
                Err(resp) => return resp,
            }
        };
        let kind = if kind == OpKind::Index && req.query.get("op_type").is_some_and(|v| v == "create") {
            OpKind::Create
        } else {
            kind
        };
        let op = BulkOp {
            kind,
            index: Some(index.to_string()),
            id: id.map(str::to_string),
            body,
        };
        let now_ms = epoch_ms();
        let result = self.lock().apply_op(&self.cfg, op, None, false, now_ms);
        match &result {
            ItemResult::Failed {
                index,
                status,
                kind,
                reason,
                ..
            } => es_error_at(*status, kind, reason, Some(index.as_str())),
            ItemResult::Done { status, .. } => {
                let mut out = String::with_capacity(256);
                result.render(&mut out);
                Response::json(*status, out)
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Other endpoints
// ---------------------------------------------------------------------------

impl MockState {
    /// `GET /`.
    fn root_info(&self) -> Response {
        let body = match self.cfg.flavor {
            Flavor::Elasticsearch => json!({
                "name": "mock",
                "cluster_name": "mock",
                "cluster_uuid": "bW9jay1jbHVzdGVyLXV1aWQ",
                "version": {
                    "number": "8.13.0",
                    "build_flavor": "default",
                    "build_type": "docker",
                    "lucene_version": "9.10.0",
                    "minimum_wire_compatibility_version": "7.17.0",
                    "minimum_index_compatibility_version": "7.0.0"
                },
                "tagline": "You Know, for Search"
            }),
            Flavor::OpenSearch => json!({
                "name": "mock",
                "cluster_name": "mock",
                "cluster_uuid": "bW9jay1jbHVzdGVyLXV1aWQ",
                "version": {
                    "distribution": "opensearch",
                    "number": "2.11.0",
                    "build_type": "tar",
                    "lucene_version": "9.7.0",
                    "minimum_wire_compatibility_version": "7.10.0",
                    "minimum_index_compatibility_version": "7.0.0"
                },
                "tagline": "The OpenSearch Project: https://opensearch.org/"
            }),
        };
        Response::value(200, &body)
    }

    fn cluster_health(&self) -> Response {
        let shards = self.lock().indices.len();
        Response::value(
            200,
            &json!({
                "cluster_name": "mock",
                "status": "green",
                "timed_out": false,
                "number_of_nodes": 1,
                "number_of_data_nodes": 1,
                "active_primary_shards": shards,
                "active_shards": shards,
                "relocating_shards": 0,
                "initializing_shards": 0,
                "unassigned_shards": 0,
                "number_of_pending_tasks": 0,
                "active_shards_percent_as_number": 100.0
            }),
        )
    }

    /// `HEAD /{index}`.
    fn index_exists(&self, expr: &str) -> Response {
        let found = self.lock().resolve(expr).is_ok_and(|names| !names.is_empty());
        Response::json(if found { 200 } else { 404 }, String::new())
    }

    /// `GET /{index}`.
    fn get_index(&self, req: &Request, expr: &str) -> Response {
        let flat = flat_requested(req);
        let inner = self.lock();
        let names = match inner.resolve(expr) {
            Ok(names) => names,
            Err(missing) => return index_not_found(&missing),
        };
        let mut out = Map::new();
        for name in &names {
            let Some(idx) = inner.indices.get(name) else {
                continue;
            };
            let entry = json!({
                "aliases": aliases_json(idx),
                "mappings": idx.mappings.clone(),
                "settings": settings_json(&idx.settings, flat),
            });
            out.insert(name.clone(), entry);
        }
        Response::value(200, &Value::Object(out))
    }

    /// `PUT /{index}` with optional `settings`, `mappings`, `aliases`.
    fn create_index(&self, req: &Request, name: &str) -> Response {
        if let Err(reason) = validate_index_name(name) {
            return es_error_at(400, "invalid_index_name_exception", &reason, Some(name));
        }
        let body = match parse_body(req) {
            Ok(v) => v,
            Err(resp) => return resp,
        };
        let settings = body.get("settings").map(flat_settings).unwrap_or_default();
        let aliases: Vec<String> = body
            .get("aliases")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let now_ms = epoch_ms();
        let mut inner = self.lock();
        if let Some(idx) = inner.indices.get(name) {
            let reason = format!("index [{name}/{}] already exists", idx.uuid);
            return es_error_at(400, "resource_already_exists_exception", &reason, Some(name));
        }
        if inner.indices.values().any(|idx| idx.aliases.contains(name)) {
            let reason = format!("Invalid index name [{name}], already exists as alias");
            return es_error_at(400, "invalid_index_name_exception", &reason, Some(name));
        }
        if let Some(alias) = aliases
            .iter()
            .find(|a| inner.indices.contains_key(a.as_str()) || a.as_str() == name)
        {
            let reason =
                format!("Invalid alias name [{alias}]: an index or data stream exists with the same name as the alias");
            return es_error(400, "invalid_alias_name_exception", &reason);
        }
        let idx = inner.create_index(name, now_ms);
        apply_settings(&mut idx.settings, &settings);
        if let Some(mappings) = body.get("mappings") {
            idx.mappings = mappings.clone();
        }
        idx.aliases.extend(aliases);
        Response::value(
            200,
            &json!({"acknowledged": true, "shards_acknowledged": true, "index": name}),
        )
    }

    /// `DELETE /{index}`.
    fn delete_index(&self, expr: &str) -> Response {
        let mut inner = self.lock();
        let names = match inner.resolve(expr) {
            Ok(names) => names,
            Err(missing) => return index_not_found(&missing),
        };
        for name in &names {
            inner.indices.remove(name);
        }
        acknowledged()
    }

    /// `GET /{index}/_settings`.
    fn get_settings(&self, req: &Request, expr: &str) -> Response {
        let flat = flat_requested(req);
        let inner = self.lock();
        let names = match inner.resolve(expr) {
            Ok(names) => names,
            Err(missing) => return index_not_found(&missing),
        };
        let mut out = Map::new();
        for name in &names {
            if let Some(idx) = inner.indices.get(name) {
                out.insert(name.clone(), json!({"settings": settings_json(&idx.settings, flat)}));
            }
        }
        Response::value(200, &Value::Object(out))
    }

    /// `PUT /{index}/_settings`: nested `{"index":{..}}` or flat keys; a
    /// `null` value removes the key (restoring the default).
    fn put_settings(&self, req: &Request, expr: &str) -> Response {
        let body = match parse_body(req) {
            Ok(v) => v,
            Err(resp) => return resp,
        };
        let wrapped = body
            .as_object()
            .is_some_and(|m| m.len() == 1 && m.contains_key("settings"));
        let body = if wrapped { body["settings"].clone() } else { body };
        let flat = flat_settings(&body);
        if flat.iter().any(|(k, _)| k.as_str() == "number_of_shards") {
            return es_error(
                400,
                "illegal_argument_exception",
                &format!("Can't update non dynamic settings [[index.number_of_shards]] for open indices [[{expr}]]"),
            );
        }
        let mut inner = self.lock();
        let names = match inner.resolve(expr) {
            Ok(names) => names,
            Err(missing) => return index_not_found(&missing),
        };
        for name in &names {
            if let Some(idx) = inner.indices.get_mut(name) {
                apply_settings(&mut idx.settings, &flat);
            }
        }
        acknowledged()
    }

    /// `GET /{index}/_mapping`.
    fn get_mapping(&self, expr: &str) -> Response {
        let inner = self.lock();
        let names = match inner.resolve(expr) {
            Ok(names) => names,
            Err(missing) => return index_not_found(&missing),
        };
        let mut out = Map::new();
        for name in &names {
            if let Some(idx) = inner.indices.get(name) {
                out.insert(name.clone(), json!({"mappings": idx.mappings.clone()}));
            }
        }
        Response::value(200, &Value::Object(out))
    }

    /// `PUT /{index}/_mapping`: merged into the current mappings.
    fn put_mapping(&self, req: &Request, expr: &str) -> Response {
        let body = match parse_body(req) {
            Ok(v) => v,
            Err(resp) => return resp,
        };
        let mut inner = self.lock();
        let names = match inner.resolve(expr) {
            Ok(names) => names,
            Err(missing) => return index_not_found(&missing),
        };
        for name in &names {
            if let Some(idx) = inner.indices.get_mut(name) {
                merge_into(&mut idx.mappings, &body);
                // As Elasticsearch does, `_meta` is replaced, not merged.
                if let Some(meta) = body.get("_meta") {
                    idx.mappings["_meta"] = meta.clone();
                }
            }
        }
        acknowledged()
    }

    /// `POST /{index}/_refresh` (documents are always visible).
    fn refresh(&self, expr: Option<&str>) -> Response {
        if let Some(expr) = expr {
            let resolved = self.lock().resolve(expr);
            if let Err(missing) = resolved {
                return index_not_found(&missing);
            }
        }
        Response::value(200, &json!({"_shards": {"total": 1, "successful": 1, "failed": 0}}))
    }

    /// `GET|POST /{index}/_count` with an optional `query`.
    fn count(&self, req: &Request, expr: Option<&str>) -> Response {
        let body = match parse_body(req) {
            Ok(v) => v,
            Err(resp) => return resp,
        };
        let query = match body.get("query") {
            Some(q) => match parse_query(q) {
                Ok(q) => q,
                Err(reason) => return es_error(400, "parsing_exception", &reason),
            },
            None => Query::All,
        };
        let inner = self.lock();
        let names = match expr {
            Some(expr) => match inner.resolve(expr) {
                Ok(names) => names,
                Err(missing) => return index_not_found(&missing),
            },
            None => inner.indices.keys().cloned().collect(),
        };
        let count = inner
            .iter_docs(&names)
            .filter(|(id, source)| query.matches(id, source))
            .count();
        drop(inner);
        Response::value(
            200,
            &json!({"count": count, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}}),
        )
    }

    /// `GET /{index}/_doc/{id}`.
    fn get_doc(&self, expr: &str, id: &str) -> Response {
        let inner = self.lock();
        let Some((name, idx)) = inner.lookup(expr) else {
            return index_not_found(expr);
        };
        let doc = idx.docs.get(id);
        let mut out = String::with_capacity(256);
        render_doc(&mut out, name, id, doc);
        Response::json(if doc.is_some() { 200 } else { 404 }, out)
    }

    /// `POST /_mget`, `POST /{index}/_mget` with `docs` or `ids`.
    fn mget(&self, req: &Request, default_index: Option<&str>) -> Response {
        let body = match parse_body(req) {
            Ok(v) => v,
            Err(resp) => return resp,
        };
        let mut wanted: Vec<(Option<String>, String)> = Vec::new();
        if let Some(docs) = body.get("docs").and_then(Value::as_array) {
            for (i, d) in docs.iter().enumerate() {
                let index = d
                    .get("_index")
                    .and_then(Value::as_str)
                    .or(default_index)
                    .map(str::to_string);
                let Some(id) = d.get("_id").filter(|v| !v.is_null()).map(id_string) else {
                    return es_error(
                        400,
                        "action_request_validation_exception",
                        &format!("Validation Failed: 1: id is missing for doc {i};"),
                    );
                };
                wanted.push((index, id));
            }
        } else if let Some(ids) = body.get("ids").and_then(Value::as_array) {
            for id in ids {
                wanted.push((default_index.map(str::to_string), id_string(id)));
            }
        } else {
            return es_error(
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: no documents to get;",
            );
        }
        if let Some(i) = wanted.iter().position(|(index, _)| index.is_none()) {
            return es_error(
                400,
                "action_request_validation_exception",
                &format!("Validation Failed: 1: index is missing for doc {i};"),
            );
        }
        let inner = self.lock();
        let mut out = String::with_capacity(wanted.len() * 256 + 16);
        out.push_str("{\"docs\":[");
        for (i, (index, id)) in wanted.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let index = index.as_deref().unwrap_or_default();
            match inner.lookup(index) {
                Some((name, idx)) => render_doc(&mut out, name, id, idx.docs.get(id)),
                None => {
                    out.push_str("{\"_index\":");
                    push_json_str(&mut out, index);
                    out.push_str(",\"_id\":");
                    push_json_str(&mut out, id);
                    out.push_str(",\"error\":{\"type\":\"index_not_found_exception\",\"reason\":");
                    push_json_str(&mut out, &format!("no such index [{index}]"));
                    out.push_str(",\"index\":");
                    push_json_str(&mut out, index);
                    out.push_str("}}");
                }
            }
        }
        out.push_str("]}");
        Response::json(200, out)
    }

    /// `POST /_aliases` with `add`, `remove` and `remove_index` actions,
    /// applied all or nothing.
    fn update_aliases(&self, req: &Request) -> Response {
        let body = match parse_body(req) {
            Ok(v) => v,
            Err(resp) => return resp,
        };
        let Some(actions) = body.get("actions").and_then(Value::as_array) else {
            return es_error(
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: no actions specified;",
            );
        };
        let mut inner = self.lock();
        // Work on a copy so that a failing action changes nothing.
        let mut aliases: BTreeMap<String, BTreeSet<String>> = inner
            .indices
            .iter()
            .map(|(name, idx)| (name.clone(), idx.aliases.clone()))
            .collect();
        let mut removed: Vec<String> = Vec::new();
        for action in actions {
            let Some((verb, spec)) = action.as_object().and_then(|m| m.iter().next()) else {
                return es_error(400, "parsing_exception", "an alias action is an object with one key");
            };
            let index_exprs = names_of(spec, "index", "indices");
            if index_exprs.is_empty() {
                return es_error(
                    400,
                    "action_request_validation_exception",
                    "Validation Failed: 1: One of [index] or [indices] is required;",
                );
            }
            let mut targets = Vec::new();
            for expr in &index_exprs {
                match inner.resolve(expr) {
                    Ok(names) => targets.extend(names),
                    Err(missing) => return index_not_found(&missing),
                }
            }
            let alias_names = names_of(spec, "alias", "aliases");
            match verb.as_str() {
                "add" => {
                    if alias_names.is_empty() {
                        return es_error(
                            400,
                            "action_request_validation_exception",
                            "Validation Failed: 1: [alias] is required;",
                        );
                    }
                    for alias in &alias_names {
                        if inner.indices.contains_key(alias) {
                            let reason = format!(
                                "Invalid alias name [{alias}]: an index or data stream exists with the same name as the alias"
                            );
                            return es_error(400, "invalid_alias_name_exception", &reason);
                        }
                        for target in &targets {
                            aliases.entry(target.clone()).or_default().insert(alias.clone());
                        }
                    }
                }
                "remove" => {
                    for alias in &alias_names {
                        let mut found = false;
                        for target in &targets {
                            if let Some(set) = aliases.get_mut(target) {
                                let before = set.len();
                                set.retain(|a| !glob(alias, a));
                                found |= set.len() != before;
                            }
                        }
                        if !found {
                            return es_error(
                                404,
                                "aliases_not_found_exception",
                                &format!("aliases [{alias}] missing"),
                            );
                        }
                    }
                }
                "remove_index" => removed.extend(targets),
                other => return es_error(400, "parsing_exception", &format!("Unknown action [{other}]")),
            }
        }
        for (name, set) in aliases {
            if let Some(idx) = inner.indices.get_mut(&name) {
                idx.aliases = set;
            }
        }
        for name in &removed {
            inner.indices.remove(name);
        }
        acknowledged()
    }

    /// `PUT /{index}/_alias/{name}`.
    fn put_alias(&self, expr: &str, alias: &str) -> Response {
        let mut inner = self.lock();
        let names = match inner.resolve(expr) {
            Ok(names) => names,
            Err(missing) => return index_not_found(&missing),
        };
        if inner.indices.contains_key(alias) {
            let reason =
                format!("Invalid alias name [{alias}]: an index or data stream exists with the same name as the alias");
            return es_error(400, "invalid_alias_name_exception", &reason);
        }
        for name in &names {
            if let Some(idx) = inner.indices.get_mut(name) {
                idx.aliases.insert(alias.to_string());
            }
        }
        acknowledged()
    }

    /// `DELETE /{index}/_alias/{name}`.
    fn delete_alias(&self, expr: &str, alias: &str) -> Response {
        let mut inner = self.lock();
        let names = match inner.resolve(expr) {
            Ok(names) => names,
            Err(missing) => return index_not_found(&missing),
        };
        let mut found = false;
        for name in &names {
            if let Some(idx) = inner.indices.get_mut(name) {
                let before = idx.aliases.len();
                idx.aliases.retain(|a| !glob(alias, a));
                found |= idx.aliases.len() != before;
            }
        }
        if !found {
            return es_error(
                404,
                "aliases_not_found_exception",
                &format!("aliases [{alias}] missing"),
            );
        }
        acknowledged()
    }

    /// `GET /_alias/{name}`, `GET /{index}/_alias[/{name}]`.
    fn get_alias(&self, expr: Option<&str>, alias: Option<&str>) -> Response {
        let inner = self.lock();
        let names = match expr {
            Some(expr) => match inner.resolve(expr) {
                Ok(names) => names,
                Err(missing) => return index_not_found(&missing),
            },
            None => inner.indices.keys().cloned().collect(),
        };
        let patterns: Vec<&str> = alias.map(|a| a.split(',').collect()).unwrap_or_default();
        let mut out = Map::new();
        for name in &names {
            let Some(idx) = inner.indices.get(name) else {
                continue;
            };
            let matched: Map<String, Value> = idx
                .aliases
                .iter()
                .filter(|a| patterns.is_empty() || patterns.iter().any(|p| *p == "_all" || glob(p, a)))
                .map(|a| (a.clone(), json!({})))
                .collect();
            if patterns.is_empty() || !matched.is_empty() {
                out.insert(name.clone(), json!({"aliases": matched}));
            }
        }
        if out.is_empty() && !patterns.is_empty() {
            let body = json!({"error": format!("alias [{}] missing", alias.unwrap_or_default()), "status": 404});
            return Response::value(404, &body);
        }
        Response::value(200, &Value::Object(out))
    }

    /// `GET /_cat/indices[/{pattern}]`, JSON with `?format=json`.
    fn cat_indices(&self, req: &Request, pattern: Option<&str>) -> Response {
        let inner = self.lock();
        let names = match pattern {
            Some(pattern) => match inner.resolve(pattern) {
                Ok(names) => names,
                Err(missing) => return index_not_found(&missing),
            },
            None => inner.indices.keys().cloned().collect(),
        };
        let rows = names
            .iter()
            .filter_map(|name| inner.indices.get(name).map(|idx| (name, idx)));
        if req.query.get("format").is_some_and(|f| f == "json") {
            let rows: Vec<Value> = rows
                .map(|(name, idx)| {
                    json!({
                        "health": "green",
                        "status": "open",
                        "index": name,
                        "uuid": idx.uuid,
                        "pri": setting_str(&idx.settings, "number_of_shards"),
                        "rep": setting_str(&idx.settings, "number_of_replicas"),
                        "docs.count": idx.docs.len().to_string(),
                        "docs.deleted": "0",
                        "store.size": "0b",
                        "pri.store.size": "0b",
                    })
                })
                .collect();
            Response::value(200, &Value::Array(rows))
        } else {
            let mut out = String::new();
            for (name, idx) in rows {
                let _ = writeln!(
                    out,
                    "green open {name} {} {} {} {} 0 0b 0b",
                    idx.uuid,
                    setting_str(&idx.settings, "number_of_shards"),
                    setting_str(&idx.settings, "number_of_replicas"),
                    idx.docs.len()
                );
            }
            Response::text(200, out)
        }
    }
}

/// A document as `_doc` and `_mget` show it.
fn render_doc(out: &mut String, index: &str, id: &str, doc: Option<&Doc>) {
    out.push_str("{\"_index\":");
    push_json_str(out, index);
    out.push_str(",\"_id\":");
    push_json_str(out, id);
    match doc {
        Some(d) => {
            let _ = write!(
                out,
                ",\"_version\":{},\"_seq_no\":{},\"_primary_term\":1,\"found\":true,\"_source\":{}}}",
                d.version, d.seq_no, d.source
            );
        }
        None => out.push_str(",\"found\":false}"),
    }
}

fn aliases_json(idx: &Index) -> Value {
    Value::Object(idx.aliases.iter().map(|a| (a.clone(), json!({}))).collect())
}

fn flat_requested(req: &Request) -> bool {
    req.query.get("flat_settings").is_some_and(|v| v != "false")
}

fn setting_str<'a>(settings: &'a Map<String, Value>, key: &str) -> &'a str {
    settings.get(key).and_then(Value::as_str).unwrap_or("1")
}

/// Names given as `single` (a string) or `plural` (a string or an array).
fn names_of(spec: &Value, single: &str, plural: &str) -> Vec<String> {
    let mut out = Vec::new();
    for key in [single, plural] {
        match spec.get(key) {
            Some(Value::String(s)) => out.push(s.clone()),
            Some(Value::Array(items)) => out.extend(items.iter().filter_map(Value::as_str).map(str::to_string)),
            _ => {}
        }
    }
    out
}

fn id_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Search, point in time, scroll
// ---------------------------------------------------------------------------

/// What a search body asks for.
struct SearchParams {
    size: usize,
    from: usize,
    query: Query,
    /// First value of `search_after`: only `_id`s above it.
    search_after: Option<String>,
    /// (`id`, `max`).
    slice: Option<(u64, u64)>,
    /// (`pit.id`, `pit.keep_alive`).
    pit: Option<(String, Option<Duration>)>,
    /// Count hits up to this many; `None`: do not report a total.
    track_total: Option<u64>,
    total_as_int: bool,
    source: SourceFilter,
}

impl SearchParams {
    fn parse(body: &Value, query_string: &HashMap<String, String>) -> Result<SearchParams, Response> {
        let number = |key: &str| -> Result<Option<usize>, Response> {
            match body.get(key) {
                Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
                    es_error(
                        400,
                        "parsing_exception",
                        &format!("[{key}] must be a non-negative number"),
                    )
                }),
                None => match query_string.get(key) {
                    Some(s) => s.trim().parse().map(Some).map_err(|_| {
                        es_error(
                            400,
                            "illegal_argument_exception",
                            &format!("Failed to parse int parameter [{key}] with value [{s}]"),
                        )
                    }),
                    None => Ok(None),
                },
            }
        };
        let size = number("size")?.unwrap_or(10);
        let from = number("from")?.unwrap_or(0);
        let query = match body.get("query") {
            Some(q) => parse_query(q).map_err(|reason| es_error(400, "parsing_exception", &reason))?,
            None => Query::All,
        };
        let search_after = match body.get("search_after") {
            None | Some(Value::Null) => None,
            Some(Value::Array(values)) => values.first().map(id_string),
            Some(_) => return Err(es_error(400, "parsing_exception", "[search_after] must be an array")),
        };
        let slice = match body.get("slice") {
            None | Some(Value::Null) => None,
            Some(s) => {
                let id = s.get("id").and_then(Value::as_u64);
                let max = s.get("max").and_then(Value::as_u64);
                match (id, max) {
                    (Some(_), Some(max)) if max <= 1 => {
                        return Err(es_error(
                            400,
                            "illegal_argument_exception",
                            "max must be greater than 1",
                        ));
                    }
                    (Some(id), Some(max)) if id >= max => {
                        return Err(es_error(
                            400,
                            "illegal_argument_exception",
                            "max must be greater than id",
                        ));
                    }
                    (Some(id), Some(max)) => Some((id, max)),
                    _ => return Err(es_error(400, "parsing_exception", "[slice] needs [id] and [max]")),
                }
            }
        };
        let pit = match body.get("pit") {
            None | Some(Value::Null) => None,
            Some(p) => {
                let Some(id) = p.get("id").and_then(Value::as_str) else {
                    return Err(es_error(400, "parsing_exception", "[pit] needs an [id]"));
                };
                let keep_alive = match p.get("keep_alive") {
                    None | Some(Value::Null) => None,
                    Some(v) => {
                        let text = v.as_str().unwrap_or_default();
                        match parse_duration(text) {
                            Some(d) => Some(d),
                            None => return Err(bad_time_value("keep_alive", text)),
                        }
                    }
                };
                Some((id.to_string(), keep_alive))
            }
        };
        let track = match body.get("track_total_hits") {
            Some(v) => v.clone(),
            None => match query_string.get("track_total_hits").map(String::as_str) {
                Some("true") => Value::Bool(true),
                Some("false") => Value::Bool(false),
                Some(other) => other.parse::<u64>().map_or(Value::Null, Value::from),
                None => Value::Null,
            },
        };
        let track_total = match track {
            Value::Bool(true) => Some(u64::MAX),
            Value::Bool(false) => None,
            Value::Number(n) => Some(n.as_u64().unwrap_or(u64::MAX)),
            _ => Some(10_000),
        };
        let total_as_int = query_string.get("rest_total_hits_as_int").is_some_and(|v| v != "false");
        Ok(SearchParams {
            size,
            from,
            query,
            search_after,
            slice,
            pit,
            track_total,
            total_as_int,
            source: SourceFilter::parse(body.get("_source")),
        })
    }

    /// Whether a document is in the slice and matches the query.
    fn matches(&self, id: &str, source: &Value) -> bool {
        if let Some((slice, max)) = self.slice
            && fnv1a(id.as_bytes()) % max != slice
        {
            return false;
        }
        self.query.matches(id, source)
    }
}

/// Counts matching documents, stopping past `cap`: (value, exact).
fn count_capped<'a>(docs: impl Iterator<Item = (&'a str, &'a Value)>, p: &SearchParams, cap: u64) -> (u64, bool) {
    let mut n = 0u64;
    for (id, source) in docs {
        if p.matches(id, source) {
            if n == cap {
                return (cap, false);
            }
            n += 1;
        }
    }
    (n, true)
}

/// A search answer; `hits` are (index, id, source).
fn render_search<'a>(
    started: Instant,
    source: &SourceFilter,
    total_as_int: bool,
    pit_id: Option<&str>,
    scroll_id: Option<&str>,
    total: Option<(u64, bool)>,
    hits: impl Iterator<Item = (&'a str, &'a str, &'a Value)>,
) -> String {
    let mut out = String::with_capacity(4096);
    let _ = write!(out, "{{\"took\":{},\"timed_out\":false,", started.elapsed().as_millis());
    if let Some(id) = pit_id {
        out.push_str("\"pit_id\":");
        push_json_str(&mut out, id);
        out.push(',');
    }
    if let Some(id) = scroll_id {
        out.push_str("\"_scroll_id\":");
        push_json_str(&mut out, id);
        out.push(',');
    }
    out.push_str("\"_shards\":{\"total\":1,\"successful\":1,\"skipped\":0,\"failed\":0},\"hits\":{");
    if let Some((value, exact)) = total {
        if total_as_int {
            let _ = write!(out, "\"total\":{value},");
        } else {
            let relation = if exact { "eq" } else { "gte" };
            let _ = write!(out, "\"total\":{{\"value\":{value},\"relation\":\"{relation}\"}},");
        }
    }
    out.push_str("\"max_score\":null,\"hits\":[");
    for (i, (index, id, doc)) in hits.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"_index\":");
        push_json_str(&mut out, index);
        out.push_str(",\"_id\":");
        push_json_str(&mut out, id);
        out.push_str(",\"_score\":null");
        source.render(&mut out, doc);
        out.push_str(",\"sort\":[");
        push_json_str(&mut out, id);
        out.push_str("]}");
    }
    out.push_str("]}}");
    out
}

/// Now plus a keep-alive, without overflowing.
fn deadline(now: Instant, keep_alive: Duration) -> Instant {
    now.checked_add(keep_alive)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 86_400))
}

impl MockState {
    /// `POST /_search` (with `pit`) and `POST /{index}/_search` (live
    /// documents, or a new scroll with `?scroll=`).
    fn search(&self, req: &Request, expr: Option<&str>) -> Response {
        let started = Instant::now();
        let body = match parse_body(req) {
            Ok(v) => v,
            Err(resp) => return resp,
        };
        let p = match SearchParams::parse(&body, &req.query) {
            Ok(p) => p,
            Err(resp) => return resp,
        };

        if let Some((pit_id, keep_alive)) = &p.pit {
            if expr.is_some() {
                return es_error(
                    400,
                    "action_request_validation_exception",
                    "Validation Failed: 1: [indices] cannot be used with point in time. Do not specify any index with point in time.;",
                );
            }
            if req.query.contains_key("scroll") {
                return es_error(
                    400,
                    "action_request_validation_exception",
                    "Validation Failed: 1: using [point in time] is not allowed in a scroll context;",
                );
            }
            let docs = {
                let now = Instant::now();
                let mut inner = self.lock();
                inner.expire(now);
                match inner.pits.get_mut(pit_id) {
                    Some(pit) => {
                        if let Some(keep_alive) = keep_alive {
                            pit.expires = deadline(now, *keep_alive);
                        }
                        Arc::clone(&pit.docs)
                    }
                    None => {
                        return es_error(
                            404,
                            "search_context_missing_exception",
                            &format!("No search context found for id [{pit_id}]"),
                        );
                    }
                }
            };
            let start = match &p.search_after {
                Some(after) => docs.partition_point(|d| d.id.as_str() <= after.as_str()),
                None => 0,
            };
            let page: Vec<&SnapDoc> = docs[start..]
                .iter()
                .filter(|d| p.matches(&d.id, &d.source))
                .skip(p.from)
                .take(p.size)
                .collect();
            let total = p
                .track_total
                .map(|cap| count_capped(docs.iter().map(|d| (d.id.as_str(), d.source.as_ref())), &p, cap));
            let hits = page
                .into_iter()
                .map(|d| (d.index.as_ref(), d.id.as_str(), d.source.as_ref()));
            let out = render_search(
                started,
                &p.source,
                p.total_as_int,
                Some(pit_id.as_str()),
                None,
                total,
                hits,
            );
            return Response::json(200, out);
        }

        let now = Instant::now();
        let mut inner = self.lock();
        let names = match expr {
            Some(expr) => match inner.resolve(expr) {
                Ok(names) => names,
                Err(missing) => return index_not_found(&missing),
            },
            None => inner.indices.keys().cloned().collect(),
        };

        if let Some(scroll) = req.query.get("scroll") {
            let Some(keep_alive) = parse_duration(scroll) else {
                return bad_time_value("scroll", scroll);
            };
            inner.expire(now);
            let hits = inner.snapshot(&names, |id, source| p.matches(id, source));
            inner.contexts += 1;
            let scroll_id = format!(
                "FGluY2x1ZGVfY29udGV4dF91dWlkDXF1ZXJ5QW5kRmV0Y2gB{:08x}{:016x}",
                inner.contexts,
                fnv1a(req.target.as_bytes())
            );
            let end = p.size.min(hits.len());
            let total = Some((hits.len() as u64, true));
            let out = render_search(
                started,
                &p.source,
                p.total_as_int,
                None,
                Some(scroll_id.as_str()),
                total,
                hits[..end]
                    .iter()
                    .map(|d| (d.index.as_ref(), d.id.as_str(), d.source.as_ref())),
            );
            let scroll = Scroll {
                hits,
                pos: end,
                size: p.size,
                source: p.source.clone(),
                total_as_int: p.total_as_int,
                expires: deadline(now, keep_alive),
            };
            inner.scrolls.insert(scroll_id, scroll);
            return Response::json(200, out);
        }

        // Live documents: each index contributes its first `from + size`
        // matches after `search_after`, merged in `_id` order.
        let live: &Inner = &inner;
        let want = p.from.saturating_add(p.size);
        let mut page: Vec<(&str, &str, &Value)> = Vec::new();
        for name in &names {
            let Some(idx) = live.indices.get(name) else {
                continue;
            };
            let name_str = name.as_str();
            let lower = match &p.search_after {
                Some(after) => Bound::Excluded(after.as_str()),
                None => Bound::Unbounded,
            };
            page.extend(
                idx.docs
                    .range::<str, _>((lower, Bound::Unbounded))
                    .filter(|(id, d)| p.matches(id, &d.source))
                    .take(want)
                    .map(move |(id, d)| (name_str, id.as_str(), d.source.as_ref())),
            );
        }
        if names.len() > 1 {
            page.sort_by(|a, b| a.1.cmp(b.1).then_with(|| a.0.cmp(b.0)));
        }
        let total = p.track_total.map(|cap| count_capped(live.iter_docs(&names), &p, cap));
        let out = render_search(
            started,
            &p.source,
            p.total_as_int,
            None,
            None,
            total,
            page.into_iter().skip(p.from).take(p.size),
        );
        Response::json(200, out)
    }

    /// `POST /_search/scroll` with `scroll_id` (and optional `scroll`).
    fn scroll_next(&self, req: &Request, path_id: Option<&str>) -> Response {
        let started = Instant::now();
        let body = match parse_body(req) {
            Ok(v) => v,
            Err(resp) => return resp,
        };
        let id = body
            .get("scroll_id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| path_id.map(str::to_string))
            .or_else(|| req.query.get("scroll_id").cloned());
        let Some(id) = id else {
            return es_error(
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: scrollId is missing;",
            );
        };
        let keep_alive_text = body
            .get("scroll")
            .and_then(Value::as_str)
            .or_else(|| req.query.get("scroll").map(String::as_str));
        let keep_alive = match keep_alive_text {
            Some(text) => match parse_duration(text) {
                Some(d) => Some(d),
                None => return bad_time_value("scroll", text),
            },
            None => None,
        };
        let now = Instant::now();
        let mut inner = self.lock();
        inner.expire(now);
        let Some(scroll) = inner.scrolls.get_mut(&id) else {
            return es_error(
                404,
                "search_context_missing_exception",
                &format!("No search context found for id [{id}]"),
            );
        };
        if let Some(keep_alive) = keep_alive {
            scroll.expires = deadline(now, keep_alive);
        }
        let start = scroll.pos;
        let end = start.saturating_add(scroll.size).min(scroll.hits.len());
        scroll.pos = end;
        let total = Some((scroll.hits.len() as u64, true));
        let out = render_search(
            started,
            &scroll.source,
            scroll.total_as_int,
            None,
            Some(id.as_str()),
            total,
            scroll.hits[start..end]
                .iter()
                .map(|d| (d.index.as_ref(), d.id.as_str(), d.source.as_ref())),
        );
        Response::json(200, out)
    }

    /// `DELETE /_search/scroll` with `scroll_id` (a string, an array, or
    /// `_all`).
    fn clear_scroll(&self, req: &Request, path_id: Option<&str>) -> Response {
        let body = match parse_body(req) {
            Ok(v) => v,
            Err(resp) => return resp,
        };
        let mut ids: Vec<String> = Vec::new();
        match body.get("scroll_id") {
            Some(Value::String(s)) => ids.push(s.clone()),
            Some(Value::Array(items)) => ids.extend(items.iter().filter_map(Value::as_str).map(str::to_string)),
            _ => {}
        }
        if let Some(path_id) = path_id {
            ids.extend(path_id.split(',').map(str::to_string));
        }
        if ids.is_empty() {
            return es_error(
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: no scroll ids specified;",
            );
        }
        let mut inner = self.lock();
        let freed = if ids.iter().any(|id| id == "_all") {
            let n = inner.scrolls.len();
            inner.scrolls.clear();
            n
        } else {
            let mut n = 0;
            for id in &ids {
                if inner.scrolls.remove(id).is_some() {
                    n += 1;
                }
            }
            n
        };
        let status = if freed > 0 { 200 } else { 404 };
        Response::value(status, &json!({"succeeded": true, "num_freed": freed}))
    }

    /// `POST /{index}/_pit?keep_alive=` (Elasticsearch) and
    /// `POST /{index}/_search/point_in_time?keep_alive=` (OpenSearch).
    fn open_pit(&self, req: &Request, expr: &str) -> Response {
        let Some(text) = req.query.get("keep_alive") else {
            return es_error(
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: [keep_alive] is not specified;",
            );
        };
        let Some(keep_alive) = parse_duration(text) else {
            return bad_time_value("keep_alive", text);
        };
        let now = Instant::now();
        let mut inner = self.lock();
        inner.expire(now);
        let names = match inner.resolve(expr) {
            Ok(names) => names,
            Err(missing) => return index_not_found(&missing),
        };
        let docs = inner.snapshot(&names, |_, _| true);
        inner.contexts += 1;
        let id = format!(
            "46ToAwMDaWR5BXV1aWR5K{:08x}{:016x}AAAAAAAAAAAA==",
            inner.contexts,
            fnv1a(expr.as_bytes())
        );
        inner.pits.insert(
            id.clone(),
            Pit {
                docs: Arc::new(docs),
                expires: deadline(now, keep_alive),
            },
        );
        drop(inner);
        let shards = json!({"total": 1, "successful": 1, "skipped": 0, "failed": 0});
        let body = match self.cfg.flavor {
            Flavor::Elasticsearch => json!({"id": id, "_shards": shards}),
            Flavor::OpenSearch => json!({"pit_id": id, "_shards": shards, "creation_time": epoch_ms()}),
        };
        Response::value(200, &body)
    }

    /// `DELETE /_pit` with `{"id": ..}` (Elasticsearch).
    fn close_pit_es(&self, req: &Request) -> Response {
        let body = match parse_body(req) {
            Ok(v) => v,
            Err(resp) => return resp,
        };
        let Some(id) = body.get("id").and_then(Value::as_str) else {
            return es_error(
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: [id] is not specified;",
            );
        };
        let freed = usize::from(self.lock().pits.remove(id).is_some());
        let status = if freed > 0 { 200 } else { 404 };
        Response::value(status, &json!({"succeeded": true, "num_freed": freed}))
    }

    /// `DELETE /_search/point_in_time` with `{"pit_id": [..]}`, or
    /// `DELETE /_search/point_in_time/_all` (OpenSearch).
    fn close_pit_os(&self, req: &Request, all: bool) -> Response {
        let body = match parse_body(req) {
            Ok(v) => v,
            Err(resp) => return resp,
        };
        let mut inner = self.lock();
        let ids: Vec<String> = if all {
            inner.pits.keys().cloned().collect()
        } else {
            match body.get("pit_id") {
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
                _ => {
                    return es_error(
                        400,
                        "action_request_validation_exception",
                        "Validation Failed: 1: no pit ids specified;",
                    );
                }
            }
        };
        let mut pits = Vec::with_capacity(ids.len());
        for id in ids {
            let successful = inner.pits.remove(&id).is_some();
            pits.push(json!({"pit_id": id, "successful": successful}));
        }
        Response::value(200, &json!({"pits": pits}))
    }
}

// ---------------------------------------------------------------------------
// Queries and `_source` filtering
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum RangeOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl RangeOp {
    fn accepts(self, ord: CmpOrdering) -> bool {
        match self {
            RangeOp::Gt => ord == CmpOrdering::Greater,
            RangeOp::Gte => ord != CmpOrdering::Less,
            RangeOp::Lt => ord == CmpOrdering::Less,
            RangeOp::Lte => ord != CmpOrdering::Greater,
        }
    }
}

/// The query language the mock understands.
#[derive(Debug)]
enum Query {
    All,
    Nothing,
    /// `term` (one value) and `terms` (any of the values).
    Term {
        field: String,
        values: Vec<Value>,
    },
    Range {
        field: String,
        bounds: Vec<(RangeOp, Value)>,
    },
    Exists(String),
    Ids(Vec<String>),
    Bool {
        /// `must` and `filter` clauses.
        must: Vec<Query>,
        must_not: Vec<Query>,
        should: Vec<Query>,
        min_should: usize,
    },
}

impl Query {
    fn matches(&self, id: &str, source: &Value) -> bool {
        match self {
            Query::All => true,
            Query::Nothing => false,
            Query::Term { field, values } => {
                any_field_value(source, id, field, |v| values.iter().any(|want| loose_eq(v, want)))
            }
            Query::Range { field, bounds } => any_field_value(source, id, field, |v| {
                bounds
                    .iter()
                    .all(|(op, bound)| compare(v, bound).is_some_and(|ord| op.accepts(ord)))
            }),
            Query::Exists(field) => any_field_value(source, id, field, |_| true),
            Query::Ids(ids) => ids.iter().any(|i| i.as_str() == id),
            Query::Bool {
                must,
                must_not,
                should,
                min_should,
            } => {
                must.iter().all(|q| q.matches(id, source))
                    && !must_not.iter().any(|q| q.matches(id, source))
                    && (*min_should == 0 || should.iter().filter(|q| q.matches(id, source)).count() >= *min_should)
            }
        }
    }
}

/// Whether any value of `field` passes `test` (arrays match by element).
fn any_field_value(source: &Value, id: &str, field: &str, test: impl Fn(&Value) -> bool) -> bool {
    if field == "_id" {
        return test(&Value::String(id.to_string()));
    }
    match lookup_field(source, field) {
        None | Some(Value::Null) => false,
        Some(Value::Array(items)) => items.iter().any(|v| !v.is_null() && test(v)),
        Some(v) => test(v),
    }
}

/// A field of `_source`: a top-level key, `name.keyword` for `name`, or a
/// dotted path into objects.
fn lookup_field<'a>(source: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = source.get(path) {
        return Some(v);
    }
    if let Some(base) = path.strip_suffix(".keyword") {
        return lookup_field(source, base);
    }
    if !path.contains('.') {
        return None;
    }
    let mut current = source;
    for part in path.split('.') {
        current = current.get(part)?;
    }
    Some(current)
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Equality as a term query sees it: numbers by value (also against
/// numeric strings), booleans against "true"/"false".
fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), _) | (_, Value::Number(_)) => match (as_number(a), as_number(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
        (Value::String(s), Value::Bool(flag)) | (Value::Bool(flag), Value::String(s)) => {
            s.as_str() == if *flag { "true" } else { "false" }
        }
        _ => a == b,
    }
}

/// Order for range queries: strings by text, otherwise by number.
fn compare(a: &Value, b: &Value) -> Option<CmpOrdering> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.as_str().cmp(y.as_str())),
        _ => as_number(a)?.partial_cmp(&as_number(b)?),
    }
}

/// The one field a `term`/`terms`/`range` body names.
fn one_field<'a>(body: &'a Value, query: &str) -> Result<(String, &'a Value), String> {
    body.as_object()
        .and_then(|m| m.iter().find(|(k, _)| !matches!(k.as_str(), "boost" | "_name")))
        .map(|(k, v)| (k.clone(), v))
        .ok_or_else(|| format!("[{query}] query malformed, no field specified"))
}

/// Bool clauses: one query or an array of them.
fn clauses(v: Option<&Value>) -> Result<Vec<Query>, String> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(parse_query).collect(),
        Some(q) => Ok(vec![parse_query(q)?]),
    }
}

/// Parses a query; anything outside the supported language is an error
/// (answered 400 `parsing_exception`).
fn parse_query(v: &Value) -> Result<Query, String> {
    let Some(obj) = v.as_object() else {
        return Err("[_na] query malformed, must start with start_object".into());
    };
    let mut entries = obj.iter();
    let (Some((kind, body)), None) = (entries.next(), entries.next()) else {
        return Err("[_na] query malformed, expected exactly one query".into());
    };
    match kind.as_str() {
        "match_all" => Ok(Query::All),
        "match_none" => Ok(Query::Nothing),
        "term" => {
            let (field, spec) = one_field(body, "term")?;
            let value = match spec {
                Value::Object(m) => m
                    .get("value")
                    .cloned()
                    .ok_or_else(|| format!("[term] query on [{field}] has no [value]"))?,
                other => other.clone(),
            };
            Ok(Query::Term {
                field,
                values: vec![value],
            })
        }
        "terms" => {
            let (field, spec) = one_field(body, "terms")?;
            let Value::Array(values) = spec else {
                return Err(format!("[terms] query on [{field}] needs an array of values"));
            };
            Ok(Query::Term {
                field,
                values: values.clone(),
            })
        }
        "range" => {
            let (field, spec) = one_field(body, "range")?;
            let Value::Object(m) = spec else {
                return Err(format!("[range] query malformed on [{field}]"));
            };
            let mut bounds = Vec::new();
            for (key, value) in m {
                let op = match key.as_str() {
                    "gt" => RangeOp::Gt,
                    "gte" | "from" => RangeOp::Gte,
                    "lt" => RangeOp::Lt,
                    "lte" | "to" => RangeOp::Lte,
                    "format" | "boost" | "time_zone" | "relation" | "_name" => continue,
                    other => return Err(format!("[range] query does not support [{other}]")),
                };
                if !value.is_null() {
                    bounds.push((op, value.clone()));
                }
            }
            Ok(Query::Range { field, bounds })
        }
        "exists" => match body.get("field").and_then(Value::as_str) {
            Some(field) => Ok(Query::Exists(field.to_string())),
            None => Err("[exists] must be provided with a [field]".into()),
        },
        "ids" => {
            let values = body
                .get("values")
                .and_then(Value::as_array)
                .map(|items| items.iter().map(id_string).collect())
                .unwrap_or_default();
            Ok(Query::Ids(values))
        }
        "bool" => {
            let Value::Object(m) = body else {
                return Err("[bool] query malformed".into());
            };
            for key in m.keys() {
                if !matches!(
                    key.as_str(),
                    "must" | "filter" | "must_not" | "should" | "minimum_should_match" | "boost" | "_name"
                ) {
                    return Err(format!("[bool] query does not support [{key}]"));
                }
            }
            let mut must = clauses(m.get("must"))?;
            must.extend(clauses(m.get("filter"))?);
            let must_not = clauses(m.get("must_not"))?;
            let should = clauses(m.get("should"))?;
            let min_should = match m.get("minimum_should_match") {
                Some(Value::Number(n)) => n.as_u64().map_or(1, |n| n as usize),
                Some(Value::String(s)) => s.trim().parse().unwrap_or(1),
                _ => usize::from(must.is_empty() && !should.is_empty()),
            };
            Ok(Query::Bool {
                must,
                must_not,
                should,
                min_should,
            })
        }
        other => Err(format!("unknown query [{other}]")),
    }
}

/// What `_source` a hit shows.
#[derive(Clone, Debug)]
enum SourceFilter {
    All,
    Nothing,
    /// Top-level keys kept by `includes` (all when empty) and not dropped
    /// by `excludes`; `*` wildcards.
    Fields {
        includes: Vec<String>,
        excludes: Vec<String>,
    },
}

impl SourceFilter {
    fn parse(v: Option<&Value>) -> SourceFilter {
        fn list(v: Option<&Value>) -> Vec<String> {
            match v {
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
                _ => Vec::new(),
            }
        }
        match v {
            None | Some(Value::Null) | Some(Value::Bool(true)) => SourceFilter::All,
            Some(Value::Bool(false)) => SourceFilter::Nothing,
            Some(Value::Object(m)) => SourceFilter::Fields {
                includes: list(m.get("includes").or_else(|| m.get("include"))),
                excludes: list(m.get("excludes").or_else(|| m.get("exclude"))),
            },
            Some(other) => SourceFilter::Fields {
                includes: list(Some(other)),
                excludes: Vec::new(),
            },
        }
    }

    fn keeps(includes: &[String], excludes: &[String], key: &str) -> bool {
        let included = includes.is_empty()
            || includes
                .iter()
                .any(|p| glob(p, key) || p.strip_prefix(key).is_some_and(|rest| rest.starts_with('.')));
        included && !excludes.iter().any(|p| glob(p, key))
    }

    /// Writes `,"_source":..` (or nothing).
    fn render(&self, out: &mut String, source: &Value) {
        match self {
            SourceFilter::Nothing => {}
            SourceFilter::All => {
                let _ = write!(out, ",\"_source\":{source}");
            }
            SourceFilter::Fields { includes, excludes } => {
                let filtered = match source {
                    Value::Object(m) => Value::Object(
                        m.iter()
                            .filter(|(k, _)| SourceFilter::keeps(includes, excludes, k))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                    ),
                    other => other.clone(),
                };
                let _ = write!(out, ",\"_source\":{filtered}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Settings and small helpers
// ---------------------------------------------------------------------------

/// Flattens a settings object to (`key`, value) pairs: nested objects
/// become dotted keys, an `index.` prefix is dropped, values become strings
/// (arrays of strings), `null` stays `null` (removal).
fn flat_settings(v: &Value) -> Vec<(String, Value)> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, child, out);
                }
            }
            Value::Null | Value::String(_) => out.push((prefix.to_string(), v.clone())),
            Value::Array(items) => {
                let strings = items
                    .iter()
                    .map(|item| match item {
                        Value::String(_) => item.clone(),
                        other => Value::String(other.to_string()),
                    })
                    .collect();
                out.push((prefix.to_string(), Value::Array(strings)));
            }
            other => out.push((prefix.to_string(), Value::String(other.to_string()))),
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out.into_iter()
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| {
            let k = k.strip_prefix("index.").map(str::to_string).unwrap_or(k);
            (k, v)
        })
        .collect()
}

/// Merges flat settings; `null` removes a key, restoring its default.
fn apply_settings(settings: &mut Map<String, Value>, flat: &[(String, Value)]) {
    for (key, value) in flat {
        if value.is_null() {
            settings.remove(key);
            if let Some((_, default)) = DEFAULT_SETTINGS.iter().find(|(k, _)| *k == key.as_str()) {
                settings.insert(key.clone(), Value::from(*default));
            }
        } else {
            settings.insert(key.clone(), value.clone());
        }
    }
}

/// Settings as `GET _settings` shows them: `{"index": {nested}}`, or
/// `{"index.key": ..}` with `flat_settings`.
fn settings_json(settings: &Map<String, Value>, flat: bool) -> Value {
    if flat {
        return Value::Object(
            settings
                .iter()
                .map(|(k, v)| (format!("index.{k}"), v.clone()))
                .collect(),
        );
    }
    let mut root = Map::new();
    for (key, value) in settings {
        let parts: Vec<&str> = key.split('.').collect();
        let Some((last, path)) = parts.split_last() else {
            continue;
        };
        let mut node = &mut root;
        for part in path {
            let entry = node
                .entry((*part).to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            node = match entry {
                Value::Object(m) => m,
                _ => unreachable!("just made an object"),
            };
        }
        node.insert((*last).to_string(), value.clone());
    }
    let mut out = Map::new();
    out.insert("index".into(), Value::Object(root));
    Value::Object(out)
}

/// Merges `patch` into `target` the way partial updates do: objects merge
/// key by key, anything else replaces. Returns whether anything changed.
fn merge_into(target: &mut Value, patch: &Value) -> bool {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            let mut changed = false;
            for (key, value) in p {
                match t.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        changed |= merge_into(existing, value);
                    }
                    Some(existing) => {
                        if *existing != *value {
                            *existing = value.clone();
                            changed = true;
                        }
                    }
                    None => {
                        t.insert(key.clone(), value.clone());
                        changed = true;
                    }
                }
            }
            changed
        }
        (t, p) => {
            if *t != *p {
                *t = p.clone();
                true
            } else {
                false
            }
        }
    }
}

/// Elasticsearch's index-name rules.
fn validate_index_name(name: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("Invalid index name [{name}], {why}"));
    if name.is_empty() {
        return bad("must not be empty");
    }
    if name != name.to_lowercase() {
        return bad("must be lowercase");
    }
    if name.starts_with(['_', '-', '+']) {
        return bad("must not start with '_', '-', or '+'");
    }
    if name == "." || name == ".." {
        return bad("must not be '.' or '..'");
    }
    if name.contains(['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':']) {
        return bad("must not contain the following characters [ , \", *, \\, <, |, ,, >, /, ?, #, :]");
    }
    if name.len() > 255 {
        return bad("index name is too long, (> 255)");
    }
    Ok(())
}

/// Elasticsearch time values: `30s`, `1m`, `500ms`, `2h`, `1d`.
fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (number, unit) = s.split_at(split);
    let n: f64 = number.parse().ok()?;
    let secs = match unit {
        "nanos" => n / 1e9,
        "micros" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

/// `*` wildcard matching.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// FNV-1a, 64 bits: the stable hash that assigns documents to slices.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Appends `s` as a JSON string literal.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut last = 0;
    for (i, b) in s.bytes().enumerate() {
        if b == b'"' || b == b'\\' || b < 0x20 {
            out.push_str(&s[last..i]);
            match b {
                b'"' => out.push_str("\\\""),
                b'\\' => out.push_str("\\\\"),
                b'\n' => out.push_str("\\n"),
                b'\r' => out.push_str("\\r"),
                b'\t' => out.push_str("\\t"),
                _ => {
                    let _ = write!(out, "\\u{b:04x}");
                }
            }
            last = i + 1;
        }
    }
    out.push_str(&s[last..]);
    out.push('"');
}
