//! A fault-injecting HTTP/1.1 proxy in front of an OpenSearch-compatible
//! server (`osmem-server` in the tests), for what a healthy server never
//! shows: bulk answers where some items fail while the rest succeed, storms
//! of 429 rejections, 5xx answers, `Retry-After`, slow answers, a cluster
//! with security enabled, and Elasticsearch's own `_pit` point-in-time API.
//!
//! Requests go to the server as they came (a gzip body is forwarded
//! decompressed) and its answers come back, except where [`ProxyConfig`]
//! asks for a fault:
//!
//! - `_bulk`: whole-request faults (503, 429 with `Retry-After`, 429 above a
//!   number of requests at once) are answered without forwarding anything;
//!   items refused one by one (random 429s, permanent mapping errors for
//!   chosen `_id`s) are taken out of the forwarded body and their failures
//!   put back into the server's answer in their places, so the server holds
//!   exactly what the answer says was written;
//! - search pages (`_search`, scroll): every Nth fails with 503;
//! - [`Flavor::Elasticsearch`]: `GET /` reports Elasticsearch 8.13, `_pit`
//!   is translated to the server's `_search/point_in_time` and OpenSearch's
//!   own point-in-time API is refused, as Elasticsearch has none.
//!
//! With `lean`, `_bulk` is answered by the proxy itself: every document is
//! checked to be JSON and counted per `_id`, none is stored, so a benchmark
//! measures its client rather than the server; everything else still goes
//! to the server.
//!
//! [`ProxyState`] counts what happened (bulk requests, requests refused
//! whole, gzip bodies, successful writes per `_id`), so that a test can
//! assert that no document was written twice; `GET /_proxy/stats` reports
//! the same over HTTP. Shared by the integration tests (`mod search_proxy;`)
//! and the `es_endpoint` example.

#![allow(dead_code)]

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::{self, Read as _};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use flate2::read::MultiGzDecoder;
use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};

/// Which product the proxy presents.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Flavor {
    /// Whatever the server says it is (osmem-server: OpenSearch 3).
    Upstream,
    /// Elasticsearch 8.13: `_pit` point in time, no `_search/point_in_time`.
    Elasticsearch,
}

/// Where the proxy forwards to and which faults it injects.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The server's base URL, `http://127.0.0.1:PORT`.
    pub upstream: String,
    pub flavor: Flavor,
    /// Probability that one bulk item is refused with status 429 and error
    /// type `es_rejected_execution_exception` (and not forwarded).
    pub reject_429: f64,
    /// When set: a bulk request arriving while this many are already being
    /// served is answered at once with HTTP 429.
    pub max_concurrent: Option<usize>,
    /// Time each accepted bulk request waits before it is served.
    pub latency: Duration,
    /// Every Nth bulk request (1-based) answers HTTP 503, writing nothing.
    pub fail_every: Option<u64>,
    /// The first K bulk requests answer HTTP 429 with `Retry-After: SECS`,
    /// writing nothing.
    pub retry_after_first: Option<(u64, u64)>, // (K, SECS)
    /// Documents whose `_id` is here are refused permanently: status 400,
    /// `mapper_parsing_exception`.
    pub poison_ids: HashSet<String>,
    /// Seed of the generator deciding which items `reject_429` refuses.
    pub seed: u64,
    /// Answer `_bulk` here, counting documents without storing them.
    pub lean: bool,
    /// When set, every request must carry exactly this `Authorization`
    /// value; others get 401 `security_exception`.
    pub authorization: Option<String>,
    /// Every Nth search page (`_search`, scroll; 1-based) answers HTTP 503.
    pub fail_search_every: Option<u64>,
}

impl ProxyConfig {
    /// A proxy to `upstream` that changes nothing.
    pub fn to(upstream: &str) -> ProxyConfig {
        ProxyConfig {
            upstream: upstream.trim_end_matches('/').to_string(),
            flavor: Flavor::Upstream,
            reject_429: 0.0,
            max_concurrent: None,
            latency: Duration::ZERO,
            fail_every: None,
            retry_after_first: None,
            poison_ids: HashSet::new(),
            seed: 1,
            lean: false,
            authorization: None,
            fail_search_every: None,
        }
    }
}

/// A running proxy. It serves until the Tokio runtime that started it
/// shuts down.
pub struct ProxyServer {
    pub addr: SocketAddr,
    pub state: Arc<ProxyState>,
}

impl ProxyServer {
    /// Starts a proxy on 127.0.0.1 and a free port.
    pub async fn start(cfg: ProxyConfig) -> ProxyServer {
        match ProxyServer::start_on(cfg, 0).await {
            Ok(server) => server,
            Err(e) => panic!("cannot start the search proxy on 127.0.0.1: {e}"),
        }
    }

    /// Starts a proxy on 127.0.0.1:`port` (0 picks a free port).
    pub async fn start_on(cfg: ProxyConfig, port: u16) -> io::Result<ProxyServer> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(ProxyState::new(cfg));
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        let state = Arc::clone(&shared);
                        // A failing connection only ends itself.
                        tokio::spawn(async move { serve_connection(state, stream).await });
                    }
                    // Out of file descriptors and the like: wait, go on.
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        });
        Ok(ProxyServer { addr, state })
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// What the proxy counts; shared by all connections.
pub struct ProxyState {
    cfg: ProxyConfig,
    rng: Mutex<Rng>,
    /// Successful index/create/update items per index and `_id`.
    writes: Mutex<HashMap<String, HashMap<String, u64>>>,
    auto_ids: AtomicU64,
    bulk_requests: AtomicU64,
    rejected_requests: AtomicU64,
    gzip_requests: AtomicU64,
    search_requests: AtomicU64,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ProxyState {
    fn new(cfg: ProxyConfig) -> ProxyState {
        ProxyState {
            rng: Mutex::new(Rng::new(cfg.seed)),
            cfg,
            writes: Mutex::new(HashMap::new()),
            auto_ids: AtomicU64::new(0),
            bulk_requests: AtomicU64::new(0),
            rejected_requests: AtomicU64::new(0),
            gzip_requests: AtomicU64::new(0),
            search_requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        }
    }

    /// How many times each `_id` of an index was written successfully; a
    /// value above 1 means a duplicate delivery.
    pub fn writes(&self, index: &str) -> HashMap<String, u64> {
        lock(&self.writes).get(index).cloned().unwrap_or_default()
    }

    /// All bulk requests received.
    pub fn bulk_requests(&self) -> u64 {
        self.bulk_requests.load(Ordering::SeqCst)
    }

    /// Bulk requests refused whole (429 or 503).
    pub fn rejected_requests(&self) -> u64 {
        self.rejected_requests.load(Ordering::SeqCst)
    }

    /// Bulk requests whose body was gzip-encoded.
    pub fn gzip_requests(&self) -> u64 {
        self.gzip_requests.load(Ordering::SeqCst)
    }

    /// The highest number of accepted bulk requests served at once.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    /// The counters `GET /_proxy/stats` answers with; `docs` is the number
    /// of distinct `_id`s written.
    pub fn stats_json(&self) -> Value {
        let indices: serde_json::Map<String, Value> = lock(&self.writes)
            .iter()
            .map(|(name, ids)| {
                let duplicates = ids.values().filter(|&&n| n > 1).count();
                let writes: u64 = ids.values().sum();
                let entry = json!({"docs": ids.len(), "duplicates": duplicates, "writes": writes});
                (name.clone(), entry)
            })
            .collect();
        json!({
            "bulk_requests": self.bulk_requests(),
            "rejected_requests": self.rejected_requests(),
            "max_in_flight": self.max_in_flight(),
            "in_flight": self.in_flight.load(Ordering::SeqCst),
            "gzip_requests": self.gzip_requests(),
            "indices": indices,
        })
    }
}

// ---------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------

async fn handle(state: &ProxyState, req: &Request) -> Response {
    let cfg = &state.cfg;
    if let Some(expected) = &cfg.authorization
        && req.headers.get("authorization") != Some(expected)
    {
        let reason = match req.headers.get("authorization") {
            None => "missing authentication credentials for REST request",
            Some(_) => "unable to authenticate user for REST request",
        };
        return es_error(401, "security_exception", reason)
            .header("WWW-Authenticate", "Basic realm=\"security\"".into());
    }
    if let Some(reason) = &req.body_error {
        return es_error(400, "parse_exception", reason);
    }
    let path = req.target.split('?').next().unwrap_or("/");
    let seg: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let is_search = seg.contains(&"_search") && !seg.contains(&"point_in_time") && req.method != "DELETE";
    if is_search && let Some(n) = cfg.fail_search_every {
        let count = state.search_requests.fetch_add(1, Ordering::SeqCst) + 1;
        if count.is_multiple_of(n) {
            return es_error(503, "search_phase_execution_exception", "all shards failed");
        }
    }
    let es = cfg.flavor == Flavor::Elasticsearch;
    match (req.method.as_str(), seg.as_slice()) {
        ("GET", ["_proxy", "stats"]) => Response::json(200, state.stats_json().to_string().into_bytes()),
        ("GET" | "HEAD", []) if es => Response::json(200, elasticsearch_root().to_string().into_bytes()),
        ("POST" | "PUT", ["_bulk"]) => bulk(state, req, None).await,
        ("POST" | "PUT", [index, "_bulk"]) => bulk(state, req, Some(pct_decode(index))).await,
        ("POST", [index, "_pit"]) if es => open_pit(state, req, index).await,
        ("DELETE", ["_pit"]) if es => close_pit(state, req).await,
        _ if es && seg.contains(&"point_in_time") => no_handler(req),
        _ => {
            forward(
                cfg,
                &req.method,
                &req.target,
                &req.body,
                req.headers.get("content-type"),
            )
            .await
        }
    }
}

/// `GET /` of an Elasticsearch 8.13 cluster.
fn elasticsearch_root() -> Value {
    json!({
        "name": "proxy",
        "cluster_name": "proxy",
        "cluster_uuid": "cHJveHktY2x1c3Rlci11dWlk",
        "version": {
            "number": "8.13.0",
            "build_flavor": "default",
            "build_type": "docker",
            "lucene_version": "9.10.0",
            "minimum_wire_compatibility_version": "7.17.0",
            "minimum_index_compatibility_version": "7.0.0"
        },
        "tagline": "You Know, for Search"
    })
}

/// Elasticsearch's `POST /{index}/_pit?keep_alive=…`: the server's
/// `_search/point_in_time`, its `pit_id` answered as `id`.
async fn open_pit(state: &ProxyState, req: &Request, index: &str) -> Response {
    let query = req
        .target
        .split_once('?')
        .map_or(String::new(), |(_, q)| format!("?{q}"));
    let target = format!("/{index}/_search/point_in_time{query}");
    let resp = forward(&state.cfg, "POST", &target, b"", None).await;
    if !(200..300).contains(&resp.status) {
        return resp;
    }
    let opened: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    match opened["pit_id"].as_str() {
        Some(id) => Response::json(200, json!({"id": id}).to_string().into_bytes()),
        None => es_error(
            502,
            "proxy_exception",
            "the server opened a point in time without a pit_id",
        ),
    }
}

/// Elasticsearch's `DELETE /_pit` with `{"id": …}`.
async fn close_pit(state: &ProxyState, req: &Request) -> Response {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let Some(id) = body["id"].as_str() else {
        return es_error(
            400,
            "action_request_validation_exception",
            "Validation Failed: 1: id is missing;",
        );
    };
    let forwarded = json!({"pit_id": [id]}).to_string();
    let resp = forward(
        &state.cfg,
        "DELETE",
        "/_search/point_in_time",
        forwarded.as_bytes(),
        Some(&"application/json".to_string()),
    )
    .await;
    if !(200..300).contains(&resp.status) {
        return resp;
    }
    Response::json(200, br#"{"succeeded":true,"num_freed":1}"#.to_vec())
}

fn no_handler(req: &Request) -> Response {
    let body = json!({
        "error": format!("no handler found for uri [{}] and method [{}]", req.target, req.method),
        "status": 400,
    });
    Response::json(400, body.to_string().into_bytes())
}

/// An Elasticsearch error body.
fn es_error(status: u16, kind: &str, reason: &str) -> Response {
    let cause = json!({"type": kind, "reason": reason});
    let body = json!({"error": {"root_cause": [cause], "type": kind, "reason": reason}, "status": status});
    Response::json(status, body.to_string().into_bytes())
}

/// Percent-decoding of a path segment.
fn pct_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------
// Bulk
// ---------------------------------------------------------------------------

/// Decrements the in-flight count however the request ends.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One item of a bulk body: its action, and the lines as they came.
struct Item<'a> {
    kind: &'static str,
    index: Option<String>,
    id: Option<String>,
    action: &'a [u8],
    source: Option<&'a [u8]>,
}

#[derive(serde::Deserialize)]
struct Meta<'a> {
    #[serde(rename = "_index", borrow)]
    index: Option<Cow<'a, str>>,
    #[serde(rename = "_id", borrow)]
    id: Option<Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct Action<'a> {
    #[serde(borrow)]
    index: Option<Meta<'a>>,
    #[serde(borrow)]
    create: Option<Meta<'a>>,
    #[serde(borrow)]
    update: Option<Meta<'a>>,
    #[serde(borrow)]
    delete: Option<Meta<'a>>,
}

/// The items of an NDJSON bulk body, or why it is malformed.
fn parse_items(body: &[u8]) -> Result<Vec<Item<'_>>, String> {
    let mut lines = body
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace));
    let mut items = Vec::new();
    while let Some((n, line)) = lines.next() {
        let action: Action<'_> =
            serde_json::from_slice(line).map_err(|e| format!("line [{}] is not a bulk action: {e}", n + 1))?;
        let (kind, meta) = match action {
            Action { index: Some(m), .. } => ("index", m),
            Action { create: Some(m), .. } => ("create", m),
            Action { update: Some(m), .. } => ("update", m),
            Action { delete: Some(m), .. } => ("delete", m),
            _ => return Err(format!("line [{}] names no bulk action", n + 1)),
        };
        let source = if kind == "delete" {
            None
        } else {
            let (_, source) = lines
                .next()
                .ok_or_else(|| format!("the [{kind}] action on line [{}] has no source line", n + 1))?;
            Some(source)
        };
        items.push(Item {
            kind,
            index: meta.index.map(Cow::into_owned),
            id: meta.id.map(Cow::into_owned),
            action: line,
            source,
        });
    }
    if items.is_empty() {
        return Err("no requests added".into());
    }
    Ok(items)
}

/// `POST /_bulk`, `POST /{index}/_bulk`.
async fn bulk(state: &ProxyState, req: &Request, default_index: Option<String>) -> Response {
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
    let busy = || {
        es_error(
            429,
            "es_rejected_execution_exception",
            "rejected execution of coordinating operation",
        )
    };
    if let Some((first, secs)) = cfg.retry_after_first
        && n <= first
    {
        state.rejected_requests.fetch_add(1, Ordering::SeqCst);
        return busy().header("Retry-After", secs.to_string());
    }
    let now_serving = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _guard = InFlight(&state.in_flight);
    if cfg.max_concurrent.is_some_and(|max| now_serving > max) {
        state.rejected_requests.fetch_add(1, Ordering::SeqCst);
        return busy();
    }
    state.max_in_flight.fetch_max(now_serving, Ordering::SeqCst);
    if !cfg.latency.is_zero() {
        tokio::time::sleep(cfg.latency).await;
    }

    let items = match parse_items(&req.body) {
        Ok(items) => items,
        Err(reason) if cfg.lean => return es_error(400, "illegal_argument_exception", &reason),
        // The server says what is wrong with it.
        Err(_) => {
            return forward(
                cfg,
                &req.method,
                &req.target,
                &req.body,
                req.headers.get("content-type"),
            )
            .await;
        }
    };
    let refusals = refuse_items(state, &items, default_index.as_deref());
    let kept: Vec<&Item<'_>> = items
        .iter()
        .zip(&refusals)
        .filter(|(_, r)| r.is_none())
        .map(|(i, _)| i)
        .collect();
    let answers = if kept.is_empty() {
        Vec::new()
    } else if cfg.lean {
        match write_lean(state, &kept, default_index.as_deref()) {
            Ok(answers) => answers,
            Err(reason) => return es_error(400, "x_content_parse_exception", &reason),
        }
    } else {
        match write_upstream(state, req, &kept).await {
            Ok(answers) => answers,
            Err(resp) => return resp,
        }
    };
    let mut errors = false;
    let mut rendered = String::with_capacity(answers.iter().map(|(a, _)| a.len()).sum::<usize>() + 64);
    let mut answers = answers.into_iter();
    for (i, refusal) in refusals.into_iter().enumerate() {
        if i > 0 {
            rendered.push(',');
        }
        match refusal {
            Some(failed) => {
                errors = true;
                rendered.push_str(&failed);
            }
            None => {
                let (answer, failed) = answers.next().unwrap_or_default();
                errors |= failed;
                rendered.push_str(&answer);
            }
        }
    }
    let took = started.elapsed().as_millis();
    Response::json(
        200,
        format!("{{\"took\":{took},\"errors\":{errors},\"items\":[{rendered}]}}").into_bytes(),
    )
}

/// The rendered failure of each item the configuration refuses (`None`:
/// the item goes through).
fn refuse_items(state: &ProxyState, items: &[Item<'_>], default_index: Option<&str>) -> Vec<Option<String>> {
    let cfg = &state.cfg;
    let mut rng = lock(&state.rng);
    items
        .iter()
        .map(|item| {
            let (status, kind, reason) = if item.kind != "delete"
                && item.id.as_ref().is_some_and(|id| cfg.poison_ids.contains(id))
            {
                (400, "mapper_parsing_exception", "failed to parse field [x]")
            } else if cfg.reject_429 > 0.0 && rng.next_f64() < cfg.reject_429 {
                (
                    429,
                    "es_rejected_execution_exception",
                    "rejected execution of primary operation [shard_queue_capacity=200] on EsThreadPoolExecutor[write]",
                )
            } else {
                return None;
            };
            let index = item.index.as_deref().or(default_index).unwrap_or_default();
            let failed = json!({item.kind: {
                "_index": index,
                "_id": item.id,
                "status": status,
                "error": {"type": kind, "reason": reason, "index": index},
            }});
            Some(failed.to_string())
        })
        .collect()
}

/// Sends the kept items to the server; returns its answer for each (and
/// whether it failed), and counts the successful writes.
async fn write_upstream(
    state: &ProxyState,
    req: &Request,
    kept: &[&Item<'_>],
) -> Result<Vec<(String, bool)>, Response> {
    let mut body = Vec::with_capacity(req.body.len());
    for item in kept {
        body.extend_from_slice(item.action);
        body.push(b'\n');
        if let Some(source) = item.source {
            body.extend_from_slice(source);
            body.push(b'\n');
        }
    }
    let ndjson = "application/x-ndjson".to_string();
    let resp = forward(&state.cfg, &req.method, &req.target, &body, Some(&ndjson)).await;
    if !(200..300).contains(&resp.status) {
        return Err(resp);
    }
    let answer: Value = serde_json::from_slice(&resp.body).map_err(|e| {
        es_error(
            502,
            "proxy_exception",
            &format!("the server's bulk answer is not JSON: {e}"),
        )
    })?;
    let Some(items) = answer["items"].as_array().filter(|a| a.len() == kept.len()) else {
        let reason = format!(
            "the server answered a bulk request of {} items with {answer}",
            kept.len()
        );
        return Err(es_error(502, "proxy_exception", &reason));
    };
    let mut writes = lock(&state.writes);
    let mut answers = Vec::with_capacity(items.len());
    for item in items {
        let Some((kind, result)) = item.as_object().and_then(|o| o.iter().next()) else {
            answers.push((item.to_string(), true));
            continue;
        };
        let ok = result["status"].as_u64().is_some_and(|s| (200..300).contains(&s));
        answers.push((item.to_string(), !ok));
        if ok
            && kind != "delete"
            && result["result"] != "noop"
            && let (Some(index), Some(id)) = (result["_index"].as_str(), result["_id"].as_str())
        {
            *writes
                .entry(index.to_string())
                .or_default()
                .entry(id.to_string())
                .or_default() += 1;
        }
    }
    Ok(answers)
}

/// Answers the kept items here: each document is checked to be JSON and
/// counted per `_id`; nothing is stored.
fn write_lean(
    state: &ProxyState,
    kept: &[&Item<'_>],
    default_index: Option<&str>,
) -> Result<Vec<(String, bool)>, String> {
    let mut answers = Vec::with_capacity(kept.len());
    let mut writes = lock(&state.writes);
    for item in kept {
        if let Some(source) = item.source {
            serde_json::from_slice::<serde::de::IgnoredAny>(source).map_err(|e| {
                format!(
                    "the document of `{}` is not JSON: {e}",
                    item.id.as_deref().unwrap_or("")
                )
            })?;
        }
        let index = item
            .index
            .as_deref()
            .or(default_index)
            .ok_or("Validation Failed: 1: index is missing;")?;
        let id = match &item.id {
            Some(id) => id.clone(),
            None => format!("auto-{}", state.auto_ids.fetch_add(1, Ordering::SeqCst) + 1),
        };
        let ids = match writes.get_mut(index) {
            Some(ids) => ids,
            None => writes.entry(index.to_string()).or_default(),
        };
        let count = ids.entry(id.clone()).or_default();
        *count += 1;
        let (result, status) = if *count == 1 {
            ("created", 201)
        } else {
            ("updated", 200)
        };
        let mut out = String::with_capacity(index.len() + id.len() + 100);
        let _ = write!(
            out,
            "{{\"{}\":{{\"_index\":{},\"_id\":{},\"_version\":{count},\"result\":\"{result}\",\"status\":{status}}}}}",
            item.kind,
            Value::from(index),
            Value::from(id)
        );
        answers.push((out, false));
    }
    Ok(answers)
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

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

// ---------------------------------------------------------------------------
// HTTP/1.1
// ---------------------------------------------------------------------------

/// Largest body accepted (after de-chunking, before gunzip).
const MAX_BODY: usize = 512 * 1024 * 1024;
/// Largest request or status line plus headers accepted.
const MAX_HEAD: usize = 1024 * 1024;

/// One parsed request.
struct Request {
    method: String,
    /// The request target as sent: path and query string.
    target: String,
    /// Lower-case names; repeated headers joined with ", ".
    headers: HashMap<String, String>,
    /// The body, already gunzipped when it came gzip-encoded.
    body: Vec<u8>,
    gzip: bool,
    /// Set when the body could not be decoded.
    body_error: Option<String>,
    /// Whether the connection closes after the answer.
    close: bool,
}

/// One answer.
struct Response {
    status: u16,
    content_type: String,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
}

impl Response {
    fn json(status: u16, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type: "application/json; charset=UTF-8".into(),
            body,
            headers: Vec::new(),
        }
    }

    fn header(mut self, name: &'static str, value: String) -> Response {
        self.headers.push((name, value));
        self
    }
}

/// Serves one connection: requests one after the other until the peer
/// closes or asks to close.
async fn serve_connection(state: Arc<ProxyState>, stream: TcpStream) -> io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(256 * 1024, rd);
    let es = state.cfg.flavor == Flavor::Elasticsearch;
    loop {
        let req = match read_request(&mut rd, &mut wr).await? {
            None => return Ok(()),
            Some(Err(reason)) => {
                write_response(&mut wr, &es_error(400, "illegal_argument_exception", &reason), true, es).await?;
                return wr.shutdown().await;
            }
            Some(Ok(req)) => req,
        };
        let resp = handle(&state, &req).await;
        write_response(&mut wr, &resp, req.close, es).await?;
        if req.close {
            return wr.shutdown().await;
        }
    }
}

/// A line without its trailing CR/LF.
fn trim_eol(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && (line[end - 1] == b'\n' || line[end - 1] == b'\r') {
        end -= 1;
    }
    &line[..end]
}

/// Reads header lines up to the empty one; `None` when the peer closed.
async fn read_headers<R: AsyncBufRead + Unpin>(
    rd: &mut R,
    used: usize,
) -> io::Result<Option<Result<HashMap<String, String>, String>>> {
    let mut headers: HashMap<String, String> = HashMap::new();
    let mut line = Vec::with_capacity(128);
    let mut used = used;
    loop {
        line.clear();
        let n = rd.read_until(b'\n', &mut line).await?;
        if n == 0 {
            return Ok(None);
        }
        used += n;
        if used > MAX_HEAD {
            return Ok(Some(Err("the headers are too large".into())));
        }
        let raw = trim_eol(&line);
        if raw.is_empty() {
            return Ok(Some(Ok(headers)));
        }
        let text = String::from_utf8_lossy(raw);
        let Some((name, value)) = text.split_once(':') else {
            return Ok(Some(Err(format!("malformed header line [{text}]"))));
        };
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        match headers.get_mut(&name) {
            Some(existing) => {
                existing.push_str(", ");
                existing.push_str(value);
            }
            None => {
                headers.insert(name, value.to_string());
            }
        }
    }
}

/// Reads a body framed by `Content-Length` or chunked; with neither, up to
/// the end of the connection when `to_close`, else empty.
async fn read_body<R: AsyncBufRead + Unpin>(
    rd: &mut R,
    headers: &HashMap<String, String>,
    to_close: bool,
) -> io::Result<Result<Vec<u8>, String>> {
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        let mut line = Vec::new();
        loop {
            line.clear();
            rd.read_until(b'\n', &mut line).await?;
            let size_text = String::from_utf8_lossy(trim_eol(&line)).into_owned();
            let size_hex = size_text.split(';').next().unwrap_or("").trim();
            let Ok(size) = usize::from_str_radix(size_hex, 16) else {
                return Ok(Err(format!("bad chunk size [{size_text}]")));
            };
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    line.clear();
                    if rd.read_until(b'\n', &mut line).await? == 0 || trim_eol(&line).is_empty() {
                        return Ok(Ok(body));
                    }
                }
            }
            if body.len() + size > MAX_BODY {
                return Ok(Err("the body is too large".into()));
            }
            let start = body.len();
            body.resize(start + size, 0);
            rd.read_exact(&mut body[start..]).await?;
            line.clear();
            rd.read_until(b'\n', &mut line).await?; // the CRLF ending the chunk
        }
    }
    if let Some(len) = headers.get("content-length") {
        let Ok(len) = len.trim().parse::<usize>() else {
            return Ok(Err(format!("bad Content-Length [{len}]")));
        };
        if len > MAX_BODY {
            return Ok(Err("the body is too large".into()));
        }
        body.resize(len, 0);
        rd.read_exact(&mut body).await?;
    } else if to_close {
        rd.read_to_end(&mut body).await?;
    }
    Ok(Ok(body))
}

/// Reads one request; `None` when the peer closed, `Err` (answered with
/// 400) when it is not HTTP.
async fn read_request<R: AsyncBufRead + Unpin>(
    rd: &mut R,
    wr: &mut OwnedWriteHalf,
) -> io::Result<Option<Result<Request, String>>> {
    let mut line = Vec::with_capacity(256);
    // Empty lines between requests are allowed.
    while trim_eol(&line).is_empty() {
        line.clear();
        if rd.read_until(b'\n', &mut line).await? == 0 {
            return Ok(None);
        }
    }
    let request_line = String::from_utf8_lossy(trim_eol(&line)).into_owned();
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Ok(Some(Err(format!("malformed request line [{request_line}]"))));
    };
    let http10 = parts.next().is_some_and(|v| v.eq_ignore_ascii_case("HTTP/1.0"));
    let (method, target) = (method.to_ascii_uppercase(), target.to_string());
    let headers = match read_headers(rd, line.len()).await? {
        None => return Ok(None),
        Some(Err(reason)) => return Ok(Some(Err(reason))),
        Some(Ok(h)) => h,
    };
    if headers
        .get("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        wr.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    let mut body = match read_body(rd, &headers, false).await? {
        Ok(body) => body,
        Err(reason) => return Ok(Some(Err(reason))),
    };
    let mut gzip = false;
    let mut body_error = None;
    match headers.get("content-encoding").map(|e| e.trim().to_ascii_lowercase()) {
        None => {}
        Some(e) if e.is_empty() || e == "identity" => {}
        Some(e) if e == "gzip" || e == "x-gzip" => {
            gzip = true;
            let mut plain = Vec::with_capacity(body.len().saturating_mul(4));
            match MultiGzDecoder::new(body.as_slice()).read_to_end(&mut plain) {
                Ok(_) => body = plain,
                Err(e) => body_error = Some(format!("cannot decompress the gzip request body: {e}")),
            }
        }
        Some(other) => body_error = Some(format!("unsupported Content-Encoding [{other}]")),
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
    Ok(Some(Ok(Request {
        method,
        target,
        headers,
        body,
        gzip,
        body_error,
        close,
    })))
}

async fn write_response(wr: &mut OwnedWriteHalf, resp: &Response, close: bool, es: bool) -> io::Result<()> {
    let mut head = String::with_capacity(256);
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        resp.status,
        reason_phrase(resp.status),
        resp.content_type,
        resp.body.len()
    );
    if es {
        head.push_str("X-Elastic-Product: Elasticsearch\r\n");
    }
    for (name, value) in &resp.headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str(if close {
        "Connection: close\r\n\r\n"
    } else {
        "Connection: keep-alive\r\n\r\n"
    });
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&resp.body);
    wr.write_all(&bytes).await
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Sends one request to the server on a connection of its own and reads
/// the answer; a server that cannot be reached is a 502.
async fn forward(
    cfg: &ProxyConfig,
    method: &str,
    target: &str,
    body: &[u8],
    content_type: Option<&String>,
) -> Response {
    match exchange(cfg, method, target, body, content_type).await {
        Ok(resp) => resp,
        Err(e) => es_error(
            502,
            "proxy_exception",
            &format!("{method} {}{target}: {e}", cfg.upstream),
        ),
    }
}

async fn exchange(
    cfg: &ProxyConfig,
    method: &str,
    target: &str,
    body: &[u8],
    content_type: Option<&String>,
) -> io::Result<Response> {
    let addr = cfg.upstream.trim_start_matches("http://");
    let stream = TcpStream::connect(addr).await?;
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if !body.is_empty() || !matches!(method, "GET" | "HEAD" | "DELETE") {
        let _ = write!(
            head,
            "Content-Type: {}\r\nContent-Length: {}\r\n",
            content_type.map_or("application/json", String::as_str),
            body.len()
        );
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    wr.write_all(&bytes).await?;
    let mut rd = BufReader::new(rd);
    let mut line = Vec::with_capacity(64);
    rd.read_until(b'\n', &mut line).await?;
    let status_line = String::from_utf8_lossy(trim_eol(&line)).into_owned();
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("malformed status line [{status_line}]")))?;
    let headers = match read_headers(&mut rd, line.len()).await? {
        None => return Err(invalid("the connection closed within the headers".into())),
        Some(Err(reason)) => return Err(invalid(reason)),
        Some(Ok(h)) => h,
    };
    let body = if method == "HEAD" || status == 204 || status == 304 {
        Vec::new()
    } else {
        read_body(&mut rd, &headers, true).await?.map_err(invalid)?
    };
    let mut resp = Response::json(status, body);
    if let Some(t) = headers.get("content-type") {
        resp.content_type = t.clone();
    }
    if let Some(after) = headers.get("retry-after") {
        resp = resp.header("Retry-After", after.clone());
    }
    Ok(resp)
}
