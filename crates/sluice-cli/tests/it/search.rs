//! Search engines end to end: documents into and out of an in-memory
//! OpenSearch-compatible server (`osmem-server`, PyPI), through S3 (moto's
//! server, PyPI), and through a fault-injecting proxy in front of that
//! server (`search_proxy`) for what a healthy server never shows: partial
//! bulk failures, 429 storms, 5xx, `Retry-After`, a secured cluster and the
//! Elasticsearch `_pit` API.
//!
//! The servers are started per test on free ports. When `osmem-server` or
//! `moto_server` is not installed the test says so loudly and is skipped;
//! under `CI=true` it fails.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::search_proxy::{Flavor, ProxyConfig, ProxyServer};
use crate::{ndjson, ok, sluice};

fn missing(what: &str, why: &str) -> Option<()> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} is not available ({why}); CI installs it (pip install osmem-server 'moto[server]')");
    }
    eprintln!("\n*** SKIPPED: {what} is not available ({why}) ***\n");
    None
}

/// A child process killed when the test ends.
struct Server {
    child: Child,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `osmem-server` on a free port.
fn osmem() -> Option<Server> {
    let bin = Command::new("python3")
        .args([
            "-c",
            "import osmem_server,os;print(os.path.dirname(osmem_server.__file__))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| format!("{}/bin/osmem-server", String::from_utf8_lossy(&o.stdout).trim()));
    let Some(bin) = bin else {
        missing("osmem-server", "python3 -c 'import osmem_server' failed")?;
        return None;
    };
    let mut child = Command::new(&bin)
        .args(["--addr", "127.0.0.1:0", "--no-stdin-watch", "--no-ja"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{bin}: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("osmem ready line");
    let ready: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("osmem said `{line}`: {e}"));
    let url = ready["url"].as_str().expect("url").to_string();
    Some(Server { child, url })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// moto's S3 server on a free port, with a bucket `bkt`.
fn s3() -> Option<Server> {
    let port = free_port();
    let child = match Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            missing("moto_server", &e.to_string())?;
            return None;
        }
    };
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while http("PUT", &server.url, "/bkt", b"").is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start on port {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(server)
}

/// A bare HTTP/1.1 request; returns (status, body).
fn http(method: &str, base: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr)?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |p| p + 4);
    let mut body = raw[split..].to_vec();
    if text.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Ok((status, body))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(p) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(std::str::from_utf8(&b[..p]).unwrap_or("0").trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[p + 2..p + 2 + n]);
        b = &b[p + 4 + n..];
    }
    out
}

fn get_json(base: &str, path: &str) -> Value {
    let (status, body) = http("GET", base, path, b"").expect("http");
    assert!(status < 300, "GET {path}: {status} {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("json")
}

/// Documents of varied shape: nested objects, arrays, unicode, floats, nulls.
fn documents(n: usize) -> Vec<(String, Value)> {
    (0..n)
        .map(|i| {
            (
                format!("d{i}"),
                json!({
                    "n": i,
                    "name": format!("document {i} — ünïcödé ✓"),
                    "price": i as f64 * 1.25,
                    "tags": ["a", format!("t{}", i % 5)],
                    "owner": {"id": i % 13, "email": null},
                    "text": "x".repeat(i % 300),
                }),
            )
        })
        .collect()
}

fn write_dump(path: &Path, index: &str, docs: &[(String, Value)]) {
    let mut text = String::new();
    for (id, doc) in docs {
        text.push_str(&json!({"_index": index, "_id": id, "_source": doc}).to_string());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// `_id` → `_source` of an elasticdump file.
fn read_dump(path: &Path) -> BTreeMap<String, Value> {
    ndjson(path)
        .into_iter()
        .map(|l| (l["_id"].as_str().expect("_id").to_string(), l["_source"].clone()))
        .collect()
}

fn count(base: &str, index: &str) -> u64 {
    let _ = http("POST", base, &format!("/{index}/_refresh"), b"");
    get_json(base, &format!("/{index}/_count"))["count"]
        .as_u64()
        .expect("count")
}

/// Every document of an index on the server, `_id` → `_source` (read with
/// the scroll API, not through sluice).
fn stored(base: &str, index: &str) -> BTreeMap<String, Value> {
    let _ = http("POST", base, &format!("/{index}/_refresh"), b"");
    let mut docs = BTreeMap::new();
    let (status, body) = http(
        "POST",
        base,
        &format!("/{index}/_search?scroll=1m"),
        br#"{"size":5000,"sort":["_doc"]}"#,
    )
    .expect("http");
    if status == 404 {
        return docs;
    }
    assert!(
        status < 300,
        "search {index}: {status} {}",
        String::from_utf8_lossy(&body)
    );
    let mut page: Value = serde_json::from_slice(&body).expect("json");
    loop {
        let hits = page["hits"]["hits"].as_array().cloned().unwrap_or_default();
        if hits.is_empty() {
            return docs;
        }
        for h in hits {
            docs.insert(h["_id"].as_str().expect("_id").to_string(), h["_source"].clone());
        }
        let next = json!({"scroll": "1m", "scroll_id": page["_scroll_id"]});
        let (status, body) = http("POST", base, "/_search/scroll", next.to_string().as_bytes()).expect("http");
        assert!(
            status < 300,
            "scroll {index}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        page = serde_json::from_slice(&body).expect("json");
    }
}

/// Stores documents on the server directly (seed data for source tests).
fn seed(base: &str, index: &str, docs: &[(String, Value)]) {
    let mut body = String::new();
    for (id, doc) in docs {
        body.push_str(&json!({"index": {"_index": index, "_id": id}}).to_string());
        body.push('\n');
        body.push_str(&doc.to_string());
        body.push('\n');
    }
    let (status, answer) = http("POST", base, "/_bulk?refresh=true", body.as_bytes()).expect("http");
    let answer: Value = serde_json::from_slice(&answer).expect("json");
    assert!(status < 300 && answer["errors"] == false, "seeding {index}: {answer}");
}

/// The fault-injecting proxy, served on a runtime of its own.
fn proxy(cfg: ProxyConfig) -> (tokio::runtime::Runtime, ProxyServer) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(ProxyServer::start(cfg));
    (rt, server)
}

#[test]
fn dump_file_to_opensearch_and_back_keeps_every_document_equal() {
    let Some(os) = osmem() else { return };
    let dir = tempfile::tempdir().unwrap();
    let docs = documents(1500);
    write_dump(&dir.path().join("docs.json"), "ignored", &docs);
    let dst = format!("{}/catalog", os.url.replace("http://", "opensearch://"));
    // A .json file holding elasticdump lines is recognised without flags.
    let err = ok(&sluice(dir.path(), &["copy", "docs.json", &dst]));
    assert!(err.contains("elasticdump"), "{err}");
    assert_eq!(count(&os.url, "catalog"), 1500);
    // Refresh and replicas are restored once the load is over.
    let settings = get_json(&os.url, "/catalog/_settings");
    assert_ne!(
        settings["catalog"]["settings"]["index"]["refresh_interval"], "-1",
        "{settings}"
    );
    ok(&sluice(dir.path(), &["copy", &dst, "back.ndjson"]));
    let back = read_dump(&dir.path().join("back.ndjson"));
    let expected: BTreeMap<String, Value> = docs.into_iter().collect();
    assert_eq!(back.len(), expected.len());
    for (id, doc) in &expected {
        assert_eq!(back.get(id), Some(doc), "document {id}");
    }
    // The scroll API reads the same documents; a bulk file carries them to another index.
    ok(&sluice(
        dir.path(),
        &[
            "copy",
            &format!("{dst}?paging=scroll"),
            "bulk.ndjson",
            "--format",
            "bulk",
        ],
    ));
    let bulk = std::fs::read_to_string(dir.path().join("bulk.ndjson")).unwrap();
    assert_eq!(bulk.lines().count(), 3000, "an action and a document line each");
    ok(&sluice(
        dir.path(),
        &["copy", "bulk.ndjson", "--input-format", "bulk", &format!("{dst}_copy")],
    ));
    ok(&sluice(dir.path(), &["copy", &format!("{dst}_copy"), "copy.ndjson"]));
    assert_eq!(read_dump(&dir.path().join("copy.ndjson")), expected);
}

#[test]
fn opensearch_to_opensearch_copies_mappings_and_settings_and_verify_catches_a_change() {
    let Some(os) = osmem() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (status, body) = http(
        "PUT",
        &os.url,
        "/src",
        br#"{"settings":{"number_of_shards":2},"mappings":{"properties":{"n":{"type":"long"},"name":{"type":"keyword"},"owner":{"properties":{"id":{"type":"integer"}}}}}}"#,
    )
    .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    write_dump(&dir.path().join("docs.ndjson"), "src", &documents(1200));
    let base = os.url.replace("http://", "opensearch://");
    ok(&sluice(dir.path(), &["copy", "docs.ndjson", &format!("{base}/src")]));
    let (status, _) = http(
        "POST",
        &os.url,
        "/_aliases",
        br#"{"actions":[{"add":{"index":"src","alias":"products"}}]}"#,
    )
    .unwrap();
    assert_eq!(status, 200);
    // Three slices of one point in time.
    ok(&sluice(
        dir.path(),
        &["copy", &format!("{base}/src?slices=3"), &format!("{base}/dst")],
    ));
    assert_eq!(count(&os.url, "dst"), 1200);
    let mapping = get_json(&os.url, "/dst/_mapping");
    assert_eq!(
        mapping["dst"]["mappings"]["properties"]["name"]["type"], "keyword",
        "{mapping}"
    );
    assert_eq!(
        mapping["dst"]["mappings"]["properties"]["owner"]["properties"]["id"]["type"],
        "integer"
    );
    let settings = get_json(&os.url, "/dst/_settings");
    assert_eq!(
        settings["dst"]["settings"]["index"]["number_of_shards"], "2",
        "{settings}"
    );
    // In the same cluster the source's alias stays on the source alone...
    let alias = get_json(&os.url, "/_alias/products");
    assert_eq!(
        alias.as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["src"],
        "{alias}"
    );
    // ...and another cluster's copy of the index gets it.
    let Some(other) = osmem() else { return };
    let to_other = format!("{}/dst", other.url.replace("http://", "elasticsearch://"));
    ok(&sluice(dir.path(), &["copy", &format!("{base}/src"), &to_other]));
    let alias = get_json(&other.url, "/_alias/products");
    assert_eq!(
        alias.as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["dst"],
        "{alias}"
    );
    assert_eq!(count(&other.url, "dst"), 1200);
    let pipeline = dir.path().join("verify.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[source]\ntype = \"opensearch\"\nurl = \"{0}\"\nindex = \"src\"\n\n[[sinks]]\ntype = \"opensearch\"\nurl = \"{0}\"\nindex = \"dst\"\n",
            os.url
        ),
    )
    .unwrap();
    let out = sluice(dir.path(), &["verify", "verify.toml"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let (status, _) = http(
        "PUT",
        &os.url,
        "/dst/_doc/d7?refresh=true",
        br#"{"n":7,"name":"changed"}"#,
    )
    .unwrap();
    assert!(status < 300);
    let out = sluice(dir.path(), &["verify", "verify.toml"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{table}");
    assert!(table.contains("1 different (d7)"), "{table}");
}

#[test]
fn rally_json_in_s3_to_opensearch_and_opensearch_to_s3_ndjson() {
    let Some(os) = osmem() else { return };
    let Some(store) = s3() else { return };
    let dir = tempfile::tempdir().unwrap();
    let rally: Vec<Value> = (0..300)
        .map(|i| {
            json!({
                "_rallyAPIMajor": "2", "_rallyAPIMinor": "0",
                "_ref": format!("https://rally1.rallydev.com/slm/webservice/v2.0/hierarchicalrequirement/{i}"),
                "_refObjectUUID": format!("uuid-{i}"), "_objectVersion": "3", "_CreatedAt": "today",
                "ObjectID": 1000 + i,
                "Name": format!("Story {i}"),
                "Owner": {"_ref": "https://rally1/user/7", "_refObjectUUID": "u7", "_rallyAPIMajor": "2", "DisplayName": "Ann"},
                "Tasks": [{"_ref": "t", "_objectVersion": "1", "Name": "task"}],
            })
        })
        .collect();
    let body = serde_json::to_vec(&rally).unwrap();
    let (status, _) = http("PUT", &store.url, "/bkt/rally/export-1.json", &body).unwrap();
    assert_eq!(status, 200);
    let pipeline = dir.path().join("rally.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[source]\ntype = \"file\"\npath = \"s3://bkt/rally/*.json\"\nformat = \"rally\"\n\n[[sinks]]\ntype = \"opensearch\"\nurl = \"{}\"\nindex = \"stories\"\n",
            os.url
        ),
    )
    .unwrap();
    let env = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", store.url.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
    ];
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .current_dir(dir.path())
            .env("XDG_STATE_HOME", dir.path().join("state"))
            .envs(env)
            .output()
            .expect("run sluice");
        ok(&out);
    };
    run(&["run", "rally.toml"]);
    assert_eq!(count(&os.url, "stories"), 300);
    let doc = get_json(&os.url, "/stories/_doc/1007");
    assert_eq!(
        doc["_source"],
        json!({"ObjectID": 1007, "Name": "Story 7", "Owner": {"DisplayName": "Ann"}, "Tasks": [{"Name": "task"}]})
    );
    // And out again, one NDJSON object per index under a prefix.
    let src = format!("{}/stories", os.url.replace("http://", "opensearch://"));
    run(&["copy", &src, "s3://bkt/exports/"]);
    let (status, body) = http("GET", &store.url, "/bkt/exports/stories.ndjson", b"").unwrap();
    assert_eq!(status, 200);
    std::fs::write(dir.path().join("exported.ndjson"), &body).unwrap();
    let exported = read_dump(&dir.path().join("exported.ndjson"));
    assert_eq!(exported.len(), 300);
    assert_eq!(exported["1007"]["Owner"], json!({"DisplayName": "Ann"}));
}

#[test]
fn refused_items_are_retried_alone_until_every_document_is_in_once() {
    let Some(os) = osmem() else { return };
    let poison: HashSet<String> = ["d13", "d777"].iter().map(|s| s.to_string()).collect();
    let (_rt, es) = proxy(ProxyConfig {
        reject_429: 0.3,
        latency: Duration::from_millis(30),
        fail_every: Some(5),
        retry_after_first: Some((2, 1)),
        poison_ids: poison.clone(),
        seed: 7,
        ..ProxyConfig::to(&os.url)
    });
    let dir = tempfile::tempdir().unwrap();
    let docs = documents(20_000);
    write_dump(&dir.path().join("docs.ndjson"), "x", &docs);
    let dst = format!(
        "{}/storm?bulk_docs=500&gzip=true",
        es.url().replace("http://", "elasticsearch://")
    );
    let out = sluice(
        dir.path(),
        &[
            "copy",
            "docs.ndjson",
            &dst,
            "--on-error",
            "dlq",
            "--dlq",
            "rejects.ndjson",
        ],
    );
    let err = ok(&out);
    let stored = stored(&os.url, "storm");
    let writes = es.state.writes("storm");
    assert_eq!(stored.len(), 20_000 - poison.len(), "{err}");
    let twice: Vec<_> = writes.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "written more than once: {twice:?}");
    for (id, doc) in docs.iter().filter(|(id, _)| !poison.contains(id)) {
        assert_eq!(stored.get(id), Some(doc), "document {id}");
    }
    // The permanently refused documents are in the dead-letter file with the server's reason.
    let dead = ndjson(&dir.path().join("rejects.ndjson"));
    assert_eq!(dead.len(), 2, "{dead:?}");
    for d in &dead {
        assert!(
            d["reason"].as_str().unwrap().contains("mapper_parsing_exception"),
            "{d}"
        );
        let raw = d["raw"].as_str().unwrap();
        assert!(
            raw.contains("\"_id\":\"d13\"") || raw.contains("\"_id\":\"d777\""),
            "{raw}"
        );
    }
    assert!(es.state.rejected_requests() >= 2, "the storm happened");
    assert!(es.state.gzip_requests() > 0, "bodies are gzipped");
}

#[test]
fn a_cluster_that_never_accepts_fails_the_run_after_the_runtime_give_up_time() {
    let Some(os) = osmem() else { return };
    // Every bulk request answers 503: the sink waits and gives up by the
    // `[runtime]` retry settings, not after its own ten minutes.
    let (_rt, es) = proxy(ProxyConfig {
        fail_every: Some(1),
        ..ProxyConfig::to(&os.url)
    });
    let dir = tempfile::tempdir().unwrap();
    write_dump(&dir.path().join("docs.ndjson"), "x", &documents(50));
    std::fs::write(
        dir.path().join("p.toml"),
        format!(
            "[source]\ntype = \"ndjson\"\npath = \"docs.ndjson\"\n\n[[sinks]]\ntype = \"elasticsearch\"\nurl = \"{}\"\nindex = \"blocked\"\n\n\
             [runtime]\nretry_initial_ms = 50\nretry_max_ms = 200\nretry_give_up_s = 1\n",
            es.url()
        ),
    )
    .unwrap();
    let started = Instant::now();
    let out = sluice(dir.path(), &["run", "p.toml"]);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("nothing accepted for 1s"), "{stderr}");
    assert!(took < Duration::from_secs(60), "gave up after {took:?}:\n{stderr}");
    assert!(es.state.rejected_requests() >= 2, "the requests were retried");
    assert_eq!(count(&os.url, "blocked"), 0);
}

#[test]
fn elasticsearch_point_in_time_slices_read_every_document() {
    let Some(os) = osmem() else { return };
    // The proxy answers as Elasticsearch 8 does: `_pit`, and no OpenSearch
    // point-in-time API to fall back on.
    let (_rt, es) = proxy(ProxyConfig {
        flavor: Flavor::Elasticsearch,
        ..ProxyConfig::to(&os.url)
    });
    seed(&os.url, "logs", &documents(3000));
    let dir = tempfile::tempdir().unwrap();
    let src = format!("{}/logs?slices=4", es.url().replace("http://", "elasticsearch://"));
    ok(&sluice(dir.path(), &["copy", &src, "logs.ndjson"]));
    let back = read_dump(&dir.path().join("logs.ndjson"));
    let expected: BTreeMap<String, Value> = documents(3000).into_iter().collect();
    assert_eq!(back, expected);
    // A query filter, as a TOML table, reads only what it selects.
    std::fs::write(
        dir.path().join("q.toml"),
        format!(
            "[source]\ntype = \"elasticsearch\"\nurl = \"{}\"\nindex = \"logs\"\nslices = 2\nquery = {{ range = {{ n = {{ gte = 100, lt = 250 }} }} }}\n\n[[sinks]]\ntype = \"ndjson\"\npath = \"some.ndjson\"\n",
            es.url()
        ),
    )
    .unwrap();
    ok(&sluice(dir.path(), &["run", "q.toml"]));
    let some = read_dump(&dir.path().join("some.ndjson"));
    assert_eq!(some.len(), 150);
    assert!(some.values().all(|d| (100..250).contains(&d["n"].as_i64().unwrap())));
}

#[test]
fn failed_search_pages_are_asked_again_without_reading_a_document_twice() {
    let Some(os) = osmem() else { return };
    let (_rt, es) = proxy(ProxyConfig {
        fail_search_every: Some(4),
        ..ProxyConfig::to(&os.url)
    });
    seed(&os.url, "flaky", &documents(3000));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        format!(
            "[source]\ntype = \"elasticsearch\"\nurl = \"{}\"\nindex = \"flaky\"\nslices = 2\npage_size = 100\n\n\
             [[sinks]]\ntype = \"ndjson\"\npath = \"flaky.ndjson\"\n\n[runtime]\nbatch_rows = 250\nretry_initial_ms = 50\n",
            es.url()
        ),
    )
    .unwrap();
    let err = ok(&sluice(dir.path(), &["run", "p.toml"]));
    let lines = std::fs::read_to_string(dir.path().join("flaky.ndjson")).unwrap();
    assert_eq!(lines.lines().count(), 3000, "every document once:\n{err}");
    let back = read_dump(&dir.path().join("flaky.ndjson"));
    let expected: BTreeMap<String, Value> = documents(3000).into_iter().collect();
    assert_eq!(back, expected);
}

#[test]
fn templates_route_rows_and_an_alias_is_swapped_after_the_load() {
    let Some(os) = osmem() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("orders.csv"),
        "tenant,id,region,amount\nacme,1,eu,10.5\nacme,2,us,3\nzen,1,eu,7\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        format!(
            "[source]\ntype = \"csv\"\npath = \"orders.csv\"\n\n[[sinks]]\ntype = \"elasticsearch\"\nurl = \"{}\"\nindex = \"orders-{{region}}\"\nid = \"{{tenant}}:{{id}}\"\nrouting = \"tenant\"\nconcurrency = 2\n",
            os.url
        ),
    )
    .unwrap();
    ok(&sluice(dir.path(), &["run", "p.toml"]));
    let eu = stored(&os.url, "orders-eu");
    assert_eq!(eu.keys().cloned().collect::<Vec<_>>(), vec!["acme:1", "zen:1"]);
    assert_eq!(
        eu["zen:1"],
        json!({"tenant": "zen", "id": 1, "region": "eu", "amount": 7.0})
    );
    assert_eq!(stored(&os.url, "orders-us").len(), 1);
    let routed = get_json(&os.url, "/orders-eu/_doc/zen:1?routing=zen");
    assert_eq!(routed["_routing"], "zen", "{routed}");
    // verify reads the templated indexes back (orders-*) and gives the
    // source rows the ids the sink gave them.
    let out = sluice(dir.path(), &["verify", "p.toml"]);
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{shown}{}", String::from_utf8_lossy(&out.stderr));
    assert!(shown.contains("3 of 3 documents compared"), "{shown}");
    let changed = json!({"tenant": "zen", "id": 1, "region": "eu", "amount": 8.0});
    let (status, _) = http(
        "PUT",
        &os.url,
        "/orders-eu/_doc/zen:1?routing=zen&refresh=true",
        changed.to_string().as_bytes(),
    )
    .unwrap();
    assert!(status < 300);
    let out = sluice(dir.path(), &["verify", "p.toml"]);
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("1 different (zen:1)"), "{shown}");
    // A fixed index with an alias: the alias moves to it once the load is complete.
    std::fs::write(
        dir.path().join("a.toml"),
        format!(
            "[source]\ntype = \"csv\"\npath = \"orders.csv\"\n\n[[sinks]]\ntype = \"elasticsearch\"\nurl = \"{}\"\nindex = \"orders-v2\"\nid = \"{{tenant}}:{{id}}\"\nalias = \"orders\"\n",
            os.url
        ),
    )
    .unwrap();
    ok(&sluice(dir.path(), &["run", "a.toml"]));
    let alias = get_json(&os.url, "/_alias/orders");
    assert!(alias.get("orders-v2").is_some(), "{alias}");
}

/// A TLS front (Python's `ssl`) for a plain HTTP server.
const TLS_PROXY: &str = r#"
import socket, ssl, sys, threading
port, target, cert, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert, key)
srv = socket.socket(); srv.bind(("127.0.0.1", port)); srv.listen(64)
print("ready", flush=True)
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d: break
            b.sendall(d)
    except Exception: pass
    finally:
        for s in (a, b):
            try: s.shutdown(socket.SHUT_RDWR)
            except Exception: pass
def serve(c):
    try: t = ctx.wrap_socket(c, server_side=True)
    except Exception: c.close(); return
    u = socket.create_connection(("127.0.0.1", target))
    threading.Thread(target=pipe, args=(t, u), daemon=True).start(); pipe(u, t)
while True:
    c, _ = srv.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

#[test]
fn https_with_a_custom_certificate_authority() {
    let Some(os) = osmem() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(d).output();
        matches!(out, Ok(o) if o.status.success())
    };
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let made = openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=sluice test CA",
    ]) && openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=localhost",
    ]) && openssl(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    if !made {
        missing("openssl", "could not make a test certificate authority");
        return;
    }
    let port = free_port();
    let target = os.url.rsplit(':').next().unwrap().to_string();
    let mut child = Command::new("python3")
        .args(["-c", TLS_PROXY, &port.to_string(), &target, "srv.pem", "srv.key"])
        .current_dir(d)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    let _proxy = Server {
        child,
        url: format!("https://127.0.0.1:{port}"),
    };
    write_dump(&d.join("docs.ndjson"), "x", &documents(50));
    let pipeline = |ca: &str| {
        format!(
            "[source]\ntype = \"ndjson\"\npath = \"docs.ndjson\"\n\n[[sinks]]\ntype = \"opensearch\"\nurl = \"https://127.0.0.1:{port}\"\nindex = \"secure\"\n{ca}"
        )
    };
    std::fs::write(d.join("trusted.toml"), pipeline("ca_cert = \"ca.pem\"\n")).unwrap();
    std::fs::write(d.join("untrusted.toml"), pipeline("")).unwrap();
    let out = sluice(d, &["run", "untrusted.toml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("error: ") && err.contains("ca_cert"),
        "the error says how to trust the cluster: {err}"
    );
    ok(&sluice(d, &["run", "trusted.toml"]));
    assert_eq!(count(&os.url, "secure"), 50);
}

/// `sluice` with extra environment variables.
fn sluice_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("SLUICE_LOG")
        .env("XDG_STATE_HOME", dir.join("state"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run sluice")
}

#[test]
fn basic_api_key_and_bearer_credentials_reach_a_secured_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let docs = documents(200);
    write_dump(&dir.path().join("docs.ndjson"), "x", &docs);
    let expected: BTreeMap<String, Value> = docs.into_iter().collect();
    let Some(os) = osmem() else { return };
    // The server checks no credentials: the proxy in front of it does.
    let secured = |header: String| {
        proxy(ProxyConfig {
            authorization: Some(header),
            ..ProxyConfig::to(&os.url)
        })
    };

    // Basic auth from the URL, both ways.
    let (_rt, es) = secured("Basic bG9hZGVyOnMzY3I6dA==".into());
    let url = es.url().replace("http://", "elasticsearch://loader:s3cr%3At@");
    ok(&sluice(dir.path(), &["copy", "docs.ndjson", &format!("{url}/basic")]));
    assert_eq!(stored(&os.url, "basic"), expected);
    ok(&sluice(dir.path(), &["copy", &format!("{url}/basic"), "basic.ndjson"]));
    assert_eq!(read_dump(&dir.path().join("basic.ndjson")), expected);

    // An API key (`id:key`, encoded by sluice) from the environment, kept off the command line.
    let (_rt, es) = secured("ApiKey a2V5LWlkOmtleS1zZWNyZXQ=".into());
    let url = es.url().replace("http://", "elasticsearch://");
    let key = "key-id:key-secret";
    ok(&sluice_env(
        dir.path(),
        &["copy", "docs.ndjson", &format!("{url}/keyed")],
        &[("SLUICE_SINKS__0__API_KEY", key)],
    ));
    assert_eq!(stored(&os.url, "keyed"), expected);
    ok(&sluice_env(
        dir.path(),
        &["copy", &format!("{url}/keyed"), "keyed.ndjson"],
        &[("SLUICE_SOURCE__API_KEY", key)],
    ));
    assert_eq!(read_dump(&dir.path().join("keyed.ndjson")), expected);

    // Without credentials, or with wrong ones, the run fails at once and says why.
    let out = sluice(dir.path(), &["copy", "docs.ndjson", &format!("{url}/nobody")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401") && err.contains("credentials"), "{err}");
    let out = sluice_env(
        dir.path(),
        &["copy", "docs.ndjson", &format!("{url}/wrong")],
        &[("SLUICE_SINKS__0__API_KEY", "key-id:guess")],
    );
    assert!(!out.status.success());
    assert!(stored(&os.url, "nobody").is_empty() && stored(&os.url, "wrong").is_empty());

    // A bearer token, in a pipeline file through ${VAR}.
    let (_rt, es) = secured("Bearer tok-123".into());
    std::fs::write(
        dir.path().join("bearer.toml"),
        format!(
            "[source]\ntype = \"ndjson\"\npath = \"docs.ndjson\"\n\n[[sinks]]\ntype = \"elasticsearch\"\nurl = \"{}\"\nindex = \"tokened\"\nbearer = \"${{ES_TOKEN}}\"\n",
            es.url()
        ),
    )
    .unwrap();
    ok(&sluice_env(
        dir.path(),
        &["run", "bearer.toml"],
        &[("ES_TOKEN", "tok-123")],
    ));
    assert_eq!(stored(&os.url, "tokened"), expected);
}

#[test]
fn settings_a_killed_load_changed_are_restored_by_the_next_run() {
    let Some(os) = osmem() else { return };
    // What a load killed with SIGKILL leaves: refresh off, no replicas, and
    // the settings to restore recorded in the index's _meta.
    let created = json!({
        "settings": {"index": {"refresh_interval": "-1", "number_of_replicas": 0}},
        "mappings": {"_meta": {"owner": "team-a", "sluice_restore": {"index": {"refresh_interval": "5s", "number_of_replicas": "2"}}}},
    });
    let (status, body) = http("PUT", &os.url, "/tuned", created.to_string().as_bytes()).unwrap();
    assert!(status < 300, "{}", String::from_utf8_lossy(&body));
    let dir = tempfile::tempdir().unwrap();
    write_dump(&dir.path().join("docs.ndjson"), "tuned", &documents(100));
    let dst = format!("{}/tuned", os.url.replace("http://", "elasticsearch://"));
    ok(&sluice(dir.path(), &["copy", "docs.ndjson", &dst]));
    assert_eq!(count(&os.url, "tuned"), 100);
    let settings = get_json(&os.url, "/tuned/_settings");
    let index = &settings["tuned"]["settings"]["index"];
    assert_eq!(index["refresh_interval"], "5s", "{settings}");
    assert_eq!(index["number_of_replicas"], "2", "{settings}");
    let meta = &get_json(&os.url, "/tuned/_mapping")["tuned"]["mappings"]["_meta"];
    assert_eq!(meta["owner"], "team-a", "the rest of _meta is kept: {meta}");
    assert!(meta["sluice_restore"].is_null(), "{meta}");

    // A fresh load records the settings while it runs and clears them at the end.
    write_dump(&dir.path().join("fresh.ndjson"), "fresh", &documents(50));
    let dst = format!("{}/fresh", os.url.replace("http://", "elasticsearch://"));
    ok(&sluice(dir.path(), &["copy", "fresh.ndjson", &dst]));
    let meta = &get_json(&os.url, "/fresh/_mapping")["fresh"]["mappings"]["_meta"];
    assert!(meta["sluice_restore"].is_null(), "{meta}");
    let settings = get_json(&os.url, "/fresh/_settings");
    assert_ne!(
        settings["fresh"]["settings"]["index"]["refresh_interval"], "-1",
        "{settings}"
    );
}

#[test]
fn raw_json_documents_go_in_unchanged_and_come_back_alone() {
    let Some(os) = osmem() else { return };
    let dir = tempfile::tempdir().unwrap();
    let docs: Vec<Value> = (0..50)
        .map(|i| json!({"n": i, "tags": ["a", i.to_string()], "nested": {"x": 1.5, "s": "✓"}}))
        .collect();
    let text: String = docs.iter().map(|d| format!("{d}\n")).collect();
    std::fs::write(dir.path().join("raw.ndjson"), text).unwrap();
    let idx = format!("{}/rawdocs", os.url.replace("http://", "elasticsearch://"));
    ok(&sluice(
        dir.path(),
        &["copy", "raw.ndjson", &idx, "--input-format", "raw"],
    ));
    let by_n = |mut v: Vec<Value>| {
        v.sort_by_key(|d| d["n"].as_i64());
        v
    };
    let stored = by_n(stored(&os.url, "rawdocs").into_values().collect());
    assert_eq!(stored, docs, "the cluster holds the documents as they were");
    ok(&sluice(dir.path(), &["copy", &idx, "back.ndjson", "--format", "raw"]));
    let back = by_n(ndjson(&dir.path().join("back.ndjson")));
    assert_eq!(back, docs, "raw output is the documents alone, without metadata");
}
