//! Resuming file reads: CSV and NDJSON from the byte offset of the last
//! delivered batch, gzip included, with line numbers that still name the
//! right line.

use std::io::Write;
use std::sync::Arc;

use arrow::array::{Array, Int64Array};
use sluice_connectors::files::{FileSource, FileSourceConfig};
use sluice_core::{BatchLimits, Position, ReadContext, Source, SourceEvent};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Starts reading the one partition of `path` in batches of `rows_per_batch`.
async fn start(
    path: &str,
    rows_per_batch: usize,
    resume: Option<Position>,
    parallelism: usize,
) -> (
    mpsc::Receiver<SourceEvent>,
    tokio::task::JoinHandle<sluice_core::Result<()>>,
) {
    let cfg: FileSourceConfig = toml::from_str(&format!("path = {path:?}")).unwrap();
    let source = Arc::new(FileSource::new(cfg).unwrap());
    let streams = source.discover().await.unwrap();
    let (tx, rx) = mpsc::channel(1024);
    let ctx = ReadContext {
        out: tx,
        cancel: CancellationToken::new(),
        limits: BatchLimits {
            rows: rows_per_batch,
            ..BatchLimits::default()
        },
        resume,
        parallelism,
        payload: None,
    };
    let (s, p) = (streams[0].clone(), streams[0].partitions[0].clone());
    (rx, tokio::spawn(async move { source.read(&s, &p, ctx).await }))
}

/// Reads the one partition of `path` from `resume`, returning (ids, lines, last position).
async fn read(path: &str, rows_per_batch: usize, resume: Option<Position>) -> (Vec<i64>, Vec<u64>, Option<Position>) {
    let (mut rx, reader) = start(path, rows_per_batch, resume, 2).await;
    let (mut ids, mut lines, mut last) = (Vec::new(), Vec::new(), None);
    while let Some(ev) = rx.recv().await {
        if let SourceEvent::Batch(b) = ev {
            let col = b.data.column_by_name("id").unwrap();
            let col = col.as_any().downcast_ref::<Int64Array>().unwrap();
            ids.extend((0..col.len()).map(|i| col.value(i)));
            lines.extend((0..b.num_rows()).map(|i| b.line(i).unwrap()));
            last = b.position.clone().or(last);
        }
    }
    reader.await.unwrap().unwrap();
    (ids, lines, last)
}

/// A position part-way through: the one after the first `batches` batches of 7 rows.
async fn position_after(path: &str, batches: usize) -> Position {
    let (mut rx, _reader) = start(path, 7, None, 1).await;
    let mut seen = 0;
    while let Some(ev) = rx.recv().await {
        if let SourceEvent::Batch(b) = ev {
            seen += 1;
            if seen == batches {
                return b.position.unwrap();
            }
        }
    }
    panic!("fewer than {batches} batches");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_and_ndjson_resume_at_the_byte_offset_of_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    // A quoted field with a newline makes lines and records differ.
    let mut csv = String::from("id,note\n");
    let mut ndjson = String::new();
    for i in 1..=50 {
        let note = if i == 3 {
            "\"two\nlines\"".to_string()
        } else {
            format!("n{i}")
        };
        csv.push_str(&format!("{i},{note}\n"));
        ndjson.push_str(&format!("{{\"id\":{i},\"note\":\"n{i}\"}}\n"));
    }
    let csv_path = dir.path().join("rows.csv");
    std::fs::write(&csv_path, &csv).unwrap();
    let nd_path = dir.path().join("rows.ndjson");
    std::fs::write(&nd_path, &ndjson).unwrap();
    let gz_path = dir.path().join("rows.csv.gz");
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&gz_path).unwrap(), flate2::Compression::fast());
    gz.write_all(csv.as_bytes()).unwrap();
    gz.finish().unwrap();

    for path in [&csv_path, &nd_path, &gz_path] {
        let path = path.to_str().unwrap();
        let at = position_after(path, 2).await;
        assert_eq!(at.rows, 14, "{path}: two batches of 7");
        assert!(at.cursor.get("offset").is_some(), "{path}: {:?}", at.cursor);
        let (ids, lines, last) = read(path, 5, Some(at)).await;
        assert_eq!(
            ids,
            (15..=50).collect::<Vec<i64>>(),
            "{path}: the rows after the checkpoint, once"
        );
        // CSV: header on line 1 and a two-line record before row 15.
        let first_line = if path.ends_with(".ndjson") { 15 } else { 17 };
        assert_eq!(lines[0], first_line, "{path}: line numbers continue");
        assert_eq!(last.unwrap().rows, 50, "{path}: positions count on from the checkpoint");
    }
}
