//! The Elasticsearch/OpenSearch source: every document of an index (or of
//! those a query selects) read through a point in time with `search_after`,
//! or the scroll API where there is no point in time, in parallel slices.
//!
//! A stream has four columns: `_index`, `_id`, `_routing` and `_source`,
//! the document as the raw JSON text the cluster returned, never parsed
//! into values, so a copy into another cluster or a dump file passes it
//! through byte for byte. The index's mappings and settings ride along in
//! the schema metadata for a search sink to create its index with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use sluice_core::{Batch, Error, PartitionSpec, Position, ReadContext, Result, Source, SourceEvent, StreamSpec};

use super::client::{Cluster, Flavor, segment};
use super::config::{PageMode, SearchSourceConfig};
use super::sink::{META_ALIASES, META_MAPPINGS, META_SETTINGS};
use super::toml_to_json;

/// Documents per slice when `slices` is not set.
const DOCS_PER_SLICE: u64 = 250_000;
const MAX_SLICES: u64 = 8;

/// Reads indexes of a cluster.
pub struct SearchSource {
    cfg: SearchSourceConfig,
    /// The client, built once, and what the cluster said it is (asked once).
    client: Cluster,
    identified: tokio::sync::OnceCell<Cluster>,
    name: &'static str,
    query: Option<Value>,
    /// Points in time shared by the slices of an index: (id, slices still reading).
    pits: Mutex<HashMap<String, (String, usize)>>,
}

impl SearchSource {
    pub fn new(cfg: SearchSourceConfig, name: &'static str) -> Result<Self> {
        let client = Cluster::new(&cfg.cluster())?;
        if cfg.index.is_none() && cfg.indices.is_empty() {
            return Err(Error::config(
                "source.index",
                "name the index to read: index = \"orders\" (or indices = [...])",
            ));
        }
        let query = match &cfg.query {
            None => None,
            Some(toml::Value::String(s)) => Some(serde_json::from_str::<Value>(s).map_err(|e| {
                Error::config(
                    "source.query",
                    format!("not JSON ({e}); write the `query` object of a search"),
                )
            })?),
            Some(v) => Some(toml_to_json(v)),
        };
        if let Some(q) = &query
            && !q.is_object()
        {
            return Err(Error::config(
                "source.query",
                "the query must be an object, e.g. {\"term\": {\"status\": \"paid\"}}",
            ));
        }
        if cfg.page_size == 0 || cfg.page_size > 10_000 {
            return Err(Error::config(
                "source.page_size",
                "page_size must be between 1 and 10000",
            ));
        }
        Ok(SearchSource {
            cfg,
            client,
            identified: tokio::sync::OnceCell::new(),
            name,
            query,
            pits: Mutex::new(HashMap::new()),
        })
    }

    fn indices(&self) -> Vec<String> {
        let mut list = self.cfg.indices.clone();
        if let Some(i) = &self.cfg.index {
            list.insert(0, i.clone());
        }
        list
    }

    async fn cluster(&self) -> Result<Cluster> {
        self.identified
            .get_or_try_init(|| async {
                let mut c = self.client.clone();
                c.identify().await?;
                Ok::<_, Error>(c)
            })
            .await
            .cloned()
    }

    fn use_pit(&self, c: &Cluster) -> Result<bool> {
        match self.cfg.paging {
            PageMode::Scroll => Ok(false),
            PageMode::Auto => Ok(c.has_pit()),
            PageMode::Pit if c.has_pit() => Ok(true),
            PageMode::Pit => Err(Error::config(
                "source.paging",
                format!(
                    "{} {}.{} has no point-in-time search; use paging = \"scroll\"",
                    c.shown, c.version.0, c.version.1
                ),
            )),
        }
    }

    /// The index's point in time, opened by the first slice to ask.
    async fn pit(&self, c: &Cluster, index: &str) -> Result<String> {
        if let Some((id, n)) = self.pits.lock().unwrap_or_else(|p| p.into_inner()).get_mut(index) {
            *n += 1;
            return Ok(id.clone());
        }
        let keep = &self.cfg.keep_alive;
        let (path, key) = match c.flavor {
            Flavor::Elasticsearch => (format!("/{}/_pit?keep_alive={keep}", segment(index)), "id"),
            Flavor::OpenSearch => (
                format!("/{}/_search/point_in_time?keep_alive={keep}", segment(index)),
                "pit_id",
            ),
        };
        let reply = c.json(Method::POST, &path, None).await?;
        let id = reply[key]
            .as_str()
            .ok_or_else(|| Error::connection(&c.shown, format!("POST {path}: no `{key}` in the answer")))?
            .to_string();
        let mut pits = self.pits.lock().unwrap_or_else(|p| p.into_inner());
        let entry = pits.entry(index.to_string()).or_insert((id, 0));
        entry.1 += 1;
        Ok(entry.0.clone())
    }

    /// A slice is done with the point in time; the last one closes it.
    async fn release_pit(&self, c: &Cluster, index: &str) {
        let last = {
            let mut pits = self.pits.lock().unwrap_or_else(|p| p.into_inner());
            match pits.get_mut(index) {
                Some((_, n)) if *n > 1 => {
                    *n -= 1;
                    None
                }
                Some(_) => pits.remove(index).map(|(id, _)| id),
                None => None,
            }
        };
        if let Some(id) = last {
            let (path, body) = match c.flavor {
                Flavor::Elasticsearch => ("/_pit", json!({"id": id})),
                Flavor::OpenSearch => ("/_search/point_in_time", json!({"pit_id": [id]})),
            };
            if let Err(e) = c.json(Method::DELETE, path, Some(&body)).await {
                tracing::debug!(error = %e, "could not close the point in time (it expires by itself)");
            }
        }
    }
}

/// The stream schema of every index.
fn schema(meta: HashMap<String, String>) -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        vec![
            Field::new("_index", DataType::Utf8, false),
            Field::new("_id", DataType::Utf8, false),
            Field::new("_routing", DataType::Utf8, true),
            Field::new("_source", DataType::Utf8, true),
        ],
        meta,
    ))
}

/// Settings worth carrying to a new index (not its identity or history).
fn copyable_settings(index_settings: &Value) -> Value {
    const DROP: [&str; 6] = ["uuid", "creation_date", "version", "provided_name", "routing", "resize"];
    match index_settings {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !DROP.contains(&k.as_str()) && !k.starts_with("verified"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        _ => json!({}),
    }
}

#[derive(Deserialize)]
struct SearchReply<'a> {
    #[serde(default)]
    pit_id: Option<String>,
    #[serde(default, rename = "_scroll_id")]
    scroll_id: Option<String>,
    #[serde(borrow)]
    hits: Hits<'a>,
}

#[derive(Deserialize)]
struct Hits<'a> {
    #[serde(borrow)]
    hits: Vec<Hit<'a>>,
}

#[derive(Deserialize)]
struct Hit<'a> {
    #[serde(rename = "_index")]
    index: &'a str,
    #[serde(rename = "_id")]
    id: std::borrow::Cow<'a, str>,
    #[serde(rename = "_routing", default)]
    routing: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "_source", borrow, default)]
    source: Option<&'a RawValue>,
    #[serde(default)]
    sort: Option<Vec<Value>>,
}

/// Rows gathered from pages until a batch is full.
struct Pending {
    index: StringBuilder,
    id: StringBuilder,
    routing: StringBuilder,
    source: StringBuilder,
    rows: usize,
    bytes: usize,
}

impl Pending {
    fn new() -> Pending {
        Pending {
            index: StringBuilder::new(),
            id: StringBuilder::new(),
            routing: StringBuilder::new(),
            source: StringBuilder::new(),
            rows: 0,
            bytes: 0,
        }
    }

    fn push(&mut self, h: &Hit<'_>) {
        self.index.append_value(h.index);
        self.id.append_value(&h.id);
        self.routing.append_option(h.routing.as_deref());
        let src = h.source.map(RawValue::get);
        self.source.append_option(src);
        self.rows += 1;
        self.bytes += src.map_or(0, str::len) + h.id.len() + h.index.len();
    }

    fn take(&mut self, schema: &SchemaRef) -> Result<RecordBatch> {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.index.finish()),
            Arc::new(self.id.finish()),
            Arc::new(self.routing.finish()),
            Arc::new(self.source.finish()),
        ];
        self.rows = 0;
        self.bytes = 0;
        Ok(RecordBatch::try_new(schema.clone(), cols)?)
    }
}

#[async_trait]
impl Source for SearchSource {
    fn name(&self) -> &str {
        self.name
    }

    async fn discover(&self) -> Result<Vec<StreamSpec>> {
        let c = self.cluster().await?;
        let mut streams = Vec::new();
        let indices = self.indices();
        for index in &indices {
            let path = format!("/{}", segment(index));
            let info = c.json(Method::GET, &path, None).await.map_err(|e| match e {
                Error::Connection { message, .. } if message.contains("404") => {
                    Error::config("source.index", format!("index {index} does not exist on {}", c.shown))
                }
                other => other,
            })?;
            let first = info
                .as_object()
                .and_then(|m| m.values().next())
                .cloned()
                .unwrap_or(Value::Null);
            let mut meta = HashMap::new();
            meta.insert(META_MAPPINGS.to_string(), first["mappings"].to_string());
            meta.insert(META_ALIASES.to_string(), first["aliases"].to_string());
            meta.insert(
                META_SETTINGS.to_string(),
                json!({"index": copyable_settings(&first["settings"]["index"])}).to_string(),
            );
            let count_body = self.query.as_ref().map(|q| json!({"query": q}));
            let count = c
                .json(Method::POST, &format!("{path}/_count"), count_body.as_ref())
                .await?["count"]
                .as_u64()
                .unwrap_or(0);
            let slices = match self.cfg.slices {
                Some(n) => n.max(1) as u64,
                None => count.div_ceil(DOCS_PER_SLICE).clamp(1, MAX_SLICES),
            };
            let partitions = (0..slices)
                .map(|i| PartitionSpec {
                    id: if slices == 1 {
                        index.as_str().into()
                    } else {
                        format!("{index}#slice{i}of{slices}").into()
                    },
                    bounds: json!({"index": index, "slice": i, "max": slices}),
                    bytes: None,
                    rows: Some(count / slices + u64::from(i < count % slices)),
                })
                .collect();
            let name = match &self.cfg.stream {
                Some(s) if indices.len() == 1 => s.clone(),
                _ => index.clone(),
            };
            streams.push(StreamSpec {
                name: name.into(),
                schema: schema(meta),
                partitions,
            });
        }
        Ok(streams)
    }

    async fn read(&self, stream: &StreamSpec, partition: &PartitionSpec, ctx: ReadContext) -> Result<()> {
        let c = self.cluster().await?;
        let index = partition.bounds["index"].as_str().unwrap_or(&stream.name).to_string();
        let slice = partition.bounds["slice"].as_u64().unwrap_or(0);
        let max = partition.bounds["max"].as_u64().unwrap_or(1);
        let pit = self.use_pit(&c)?;
        if ctx.resume.is_some() {
            tracing::info!(partition = %partition.id, "search slices are read again from the start on resume (writes by _id are idempotent)");
        }
        let mut body = json!({"size": self.cfg.page_size});
        if let Some(q) = &self.query {
            body["query"] = q.clone();
        }
        if max > 1 {
            body["slice"] = json!({"id": slice, "max": max});
        }
        let keep = self.cfg.keep_alive.clone();
        let mut pit_id = None;
        let mut scroll_id: Option<String> = None;
        if pit {
            let id = self.pit(&c, &index).await?;
            body["sort"] = json!([{"_shard_doc": "asc"}]);
            // Counting every page's hits is wasted work (a scroll may not skip it).
            body["track_total_hits"] = Value::Bool(false);
            body["pit"] = json!({"id": id, "keep_alive": keep});
            pit_id = Some(id);
        } else {
            body["sort"] = json!(["_doc"]);
        }
        let mut pending = Pending::new();
        let mut rows: u64 = 0;
        let origin: Arc<str> = format!("{}/{index}", c.shown).into();
        // Whether a batch of this slice went out: after that, starting the
        // slice again would hand over its documents twice.
        let mut handed_over = false;
        let outcome: Result<()> = async {
            let mut first = true;
            loop {
                if ctx.cancel.is_cancelled() {
                    break;
                }
                let mut attempt = 0u32;
                let reply = loop {
                    let sent = if pit {
                        c.send(Method::POST, "/_search", Some(super::client::Body::json(&body)))
                            .await
                    } else if first {
                        let path = format!("/{}/_search?scroll={keep}", segment(&index));
                        c.send(Method::POST, &path, Some(super::client::Body::json(&body)))
                            .await
                    } else {
                        let next = json!({"scroll": keep, "scroll_id": scroll_id});
                        c.send(Method::POST, "/_search/scroll", Some(super::client::Body::json(&next)))
                            .await
                    };
                    let failure = match sent {
                        Ok(r) if r.status.is_success() => break r,
                        Ok(r) => c.status_error(&Method::POST, "/_search", &r),
                        Err(e) => e,
                    };
                    if !failure.is_retryable() || !handed_over {
                        // Nothing went out yet: the engine may read the slice again.
                        return Err(failure);
                    }
                    // A page after a point in time and a sort position reads
                    // the same documents when asked again; a scroll page does
                    // not (the cluster may have moved past it).
                    if !pit || attempt >= PAGE_RETRIES {
                        return Err(Error::connection(
                            &c.shown,
                            format!(
                                "{failure}; the read of slice {slice} of `{index}` stopped after handing over {rows} \
                                 documents and cannot go on from there; run again to read it from the start"
                            ),
                        ));
                    }
                    attempt += 1;
                    let pause = Duration::from_millis(500u64 << attempt.min(6)).min(Duration::from_secs(30));
                    tracing::warn!(error = %failure, attempt, pause_ms = pause.as_millis() as u64, "search page failed; asking again");
                    tokio::select! {
                        _ = ctx.cancel.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(pause) => {}
                    }
                };
                first = false;
                let page: SearchReply<'_> = serde_json::from_slice(&reply.body)
                    .map_err(|e| Error::connection(&c.shown, format!("unexpected search answer: {e}")))?;
                if let Some(id) = page.pit_id {
                    body["pit"]["id"] = Value::String(id);
                }
                if page.scroll_id.is_some() {
                    scroll_id = page.scroll_id;
                }
                let n = page.hits.hits.len();
                for h in &page.hits.hits {
                    pending.push(h);
                }
                if let Some(sort) = page.hits.hits.last().and_then(|h| h.sort.clone()) {
                    body["search_after"] = Value::Array(sort);
                }
                rows += n as u64;
                let end = n < self.cfg.page_size || n == 0;
                if pending.rows > 0 && (end || pending.rows >= ctx.limits.rows || pending.bytes >= ctx.limits.bytes) {
                    let data = pending.take(&stream.schema)?;
                    let mut batch = Batch::new(stream.name.clone(), origin.clone(), data);
                    batch.position = Some(Position {
                        partition: partition.id.clone(),
                        cursor: body.get("search_after").cloned().unwrap_or(Value::Null),
                        rows,
                    });
                    if ctx.out.send(SourceEvent::Batch(batch)).await.is_err() {
                        break;
                    }
                    handed_over = true;
                }
                if end {
                    break;
                }
            }
            Ok(())
        }
        .await;
        if let Some(id) = &scroll_id {
            let _ = c
                .send(
                    Method::DELETE,
                    "/_search/scroll",
                    Some(super::client::Body::json(&json!({"scroll_id": [id]}))),
                )
                .await;
        }
        if pit_id.is_some() {
            self.release_pit(&c, &index).await;
        }
        outcome
    }
}

/// Times a failed page of a point-in-time read is asked for again.
const PAGE_RETRIES: u32 = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_settings_are_not_copied() {
        let s = json!({"number_of_shards": "3", "uuid": "x", "creation_date": "1", "provided_name": "a", "version": {"created": "1"}, "analysis": {}});
        let c = copyable_settings(&s);
        assert_eq!(c, json!({"number_of_shards": "3", "analysis": {}}));
    }

    #[test]
    fn hits_keep_the_source_text_as_it_came() {
        let body = r#"{"hits":{"hits":[{"_index":"a","_id":"1","_source":{"b": 1.50, "a":"x"},"sort":[5]}]}}"#;
        let page: SearchReply<'_> = serde_json::from_str(body).unwrap();
        assert_eq!(page.hits.hits[0].source.unwrap().get(), r#"{"b": 1.50, "a":"x"}"#);
    }
}
