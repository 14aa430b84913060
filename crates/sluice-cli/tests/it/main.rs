//! End-to-end tests of the `sluice` binary: what a user runs and what they
//! check afterwards (rows arrived, values equal, the error names the line).

mod copy;
mod fidelity;
mod hostile;
mod mysql;
mod outputs;
mod pipelines;
mod postgres;
mod quickstart;
mod refused;
mod rerun;
mod resume;
mod search;
// The fault-injecting proxy in front of osmem-server, shared with the bench endpoint.
#[path = "../../../sluice-connectors/tests/it/search_proxy.rs"]
mod search_proxy;
mod servers;
mod silent;
mod spatial;
mod sqlite;
mod sync;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `sluice` with `args` in `dir`.
pub fn sluice(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .current_dir(dir)
        .env_remove("SLUICE_LOG")
        .env("XDG_STATE_HOME", dir.join("state"))
        .output()
        .expect("run sluice")
}

/// Asserts success and returns stderr, printing everything on failure.
pub fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "sluice failed ({:?}):\nstdout: {}\nstderr: {stderr}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// A fixture file under `tests/data`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Lines of an NDJSON file as JSON values.
pub fn ndjson(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// Rows of a Parquet file.
pub fn parquet_rows(path: &Path) -> Vec<arrow::record_batch::RecordBatch> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader");
    reader.map(|b| b.expect("batch")).collect()
}
