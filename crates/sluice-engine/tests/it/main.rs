//! Engine tests: what is durable when a run ends.
//!
//! - `harness`: in-memory sources and sinks that fail, refuse, stall and
//!   crash on purpose.
//! - `engine`: the engine's delivery rules over them, timing on a paused clock.
//! - `props`: property tests of checkpoints, row accounting and exactly-once resume.
//! - below: end to end through real file and SQLite connectors.

mod engine;
mod harness;
mod props;

use std::sync::Arc;

use sluice_engine::RunProgress;
use tokio_util::sync::CancellationToken;

fn pipeline(dir: &std::path::Path, text: &str) -> sluice_engine::Pipeline {
    let p = dir.join("p.toml");
    std::fs::write(&p, text).unwrap();
    sluice_engine::parse(
        text,
        "p.toml",
        "p",
        dir.to_path_buf(),
        &|_| None,
        &[],
        Arc::new(sluice_connectors::registry()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn checkpoint_reaches_the_end_of_the_input_once_every_sink_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut csv = String::from("id,v\n");
    for i in 0..10_000 {
        csv.push_str(&format!("{i},{}\n", i * 2));
    }
    std::fs::write(d.join("in.csv"), &csv).unwrap();
    let text = format!(
        "[source]\ntype = \"csv\"\npath = '{in_}'\n\n[[sinks]]\ntype = \"sqlite\"\npath = '{db}'\n\n[[sinks]]\ntype = \"parquet\"\npath = '{pq}'\n\n[runtime]\nbatch_rows = 1000\nbatch_bytes = 4096\nstate_dir = '{st}'\n",
        in_ = d.join("in.csv").display(),
        db = d.join("out.db").display(),
        pq = d.join("out.parquet").display(),
        st = d.join("state").display()
    );
    let p = pipeline(d, &text);
    let outcome = sluice_engine::run(&p, Arc::new(RunProgress::default()), CancellationToken::new()).await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.report.streams[0].read, 10_000);
    assert_eq!(outcome.report.streams[0].written, 10_000);

    let store = sluice_state::StateStore::open(&d.join("state")).unwrap();
    let cps = store.checkpoints("p", "in").unwrap();
    assert_eq!(cps.len(), 1);
    assert_eq!(cps[0].rows, 10_000);
    assert_eq!(cps[0].cursor["offset"], csv.len() as u64);
    let streams = store.streams("p").unwrap();
    assert_eq!(streams[0].status, "completed");
    assert_eq!(streams[0].counts.written, 10_000);
}

/// Sinks doing synchronous I/O (SQLite, Parquet, NDJSON) work on a
/// current-thread runtime too, as a program embedding the engine may run it.
#[tokio::test(flavor = "current_thread")]
async fn sinks_with_synchronous_io_run_on_a_current_thread_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut csv = String::from("id,v\n");
    for i in 0..1000 {
        csv.push_str(&format!("{i},{}\n", i * 2));
    }
    std::fs::write(d.join("in.csv"), &csv).unwrap();
    let text = format!(
        "[source]\ntype = \"csv\"\npath = '{in_}'\n\n[[sinks]]\ntype = \"sqlite\"\npath = '{db}'\n\n[[sinks]]\ntype = \"parquet\"\npath = '{pq}'\n\n[[sinks]]\ntype = \"ndjson\"\npath = '{nd}'\n\n[runtime]\nbatch_rows = 100\nstate_dir = '{st}'\n",
        in_ = d.join("in.csv").display(),
        db = d.join("out.db").display(),
        pq = d.join("out.parquet").display(),
        nd = d.join("out.ndjson").display(),
        st = d.join("state").display()
    );
    let p = pipeline(d, &text);
    let outcome = sluice_engine::run(&p, Arc::new(RunProgress::default()), CancellationToken::new()).await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.report.streams[0].written, 1000);
    let lines = std::fs::read_to_string(d.join("out.ndjson")).unwrap();
    assert_eq!(lines.lines().count(), 1000);
    assert!(std::fs::metadata(d.join("out.parquet")).unwrap().len() > 0);
    let store = sluice_state::StateStore::open(&d.join("state")).unwrap();
    assert_eq!(store.streams("p").unwrap()[0].status, "completed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_cancelled_before_it_starts_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("in.csv"), "a\n1\n2\n").unwrap();
    let text = format!(
        "[source]\ntype = \"csv\"\npath = '{}'\n\n[[sinks]]\ntype = \"ndjson\"\npath = '{}'\n\n[runtime]\nstate_dir = '{}'\n",
        d.join("in.csv").display(),
        d.join("o.ndjson").display(),
        d.join("state").display()
    );
    let p = pipeline(d, &text);
    let cancel = CancellationToken::new();
    cancel.cancel();
    let outcome = sluice_engine::run(&p, Arc::new(RunProgress::default()), cancel).await;
    assert!(
        matches!(outcome.error, Some(sluice_core::Error::Interrupted)),
        "{:?}",
        outcome.error.map(|e| e.to_string())
    );
    assert!(outcome.report.interrupted);
    assert!(outcome.report.streams.is_empty());
    assert!(!d.join("o.ndjson").exists());
}
