//! `sluice copy`: one-liners, formats, bad rows.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::{fixture, ndjson, ok, parquet_rows, sluice};

#[test]
fn dlq_gets_one_line_per_bad_row_with_its_line_number() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("dirty.csv");
    let out = sluice(
        dir.path(),
        &[
            "copy",
            src.to_str().unwrap(),
            "out.ndjson",
            "--on-error",
            "dlq",
            "--dlq",
            "rejects.ndjson",
        ],
    );
    let stderr = ok(&out);
    assert!(stderr.contains("2 rejected row(s) written to"), "{stderr}");

    let good = ndjson(&dir.path().join("out.ndjson"));
    let ids: Vec<i64> = good.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3, 6]);
    assert_eq!(good[1]["note"], "quoted, with comma");
    assert_eq!(good[2]["note"], "multi\nline note");
    assert_eq!(good[3]["note"], "last \"good\" one");

    let bad = ndjson(&dir.path().join("rejects.ndjson"));
    assert_eq!(bad.len(), 2);
    assert_eq!(bad[0]["line"], 6);
    assert_eq!(bad[0]["raw"], "4,delta");
    assert!(
        bad[0]["reason"].as_str().unwrap().contains("expected 4 got 2"),
        "{}",
        bad[0]
    );
    assert_eq!(bad[1]["line"], 7);
    assert_eq!(bad[1]["raw"], "5,epsilon,50,extra,field");
    assert!(bad[0]["origin"].as_str().unwrap().ends_with("dirty.csv"));
}

#[test]
fn a_value_past_the_inference_sample_is_rejected_with_its_column() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("id,amount\n");
    for i in 1..=3000 {
        if i == 2500 {
            csv.push_str("2500,n/a\n");
        } else {
            csv.push_str(&format!("{i},{}\n", i * 10));
        }
    }
    std::fs::write(dir.path().join("big.csv"), csv).unwrap();
    ok(&sluice(
        dir.path(),
        &["copy", "big.csv", "out.csv", "--on-error", "dlq"],
    ));
    let bad = ndjson(&dir.path().join("rejects.ndjson"));
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["line"], 2501);
    let reason = bad[0]["reason"].as_str().unwrap();
    assert!(reason.contains("`amount`") && reason.contains("n/a"), "{reason}");
    let out = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
    assert_eq!(out.lines().count(), 3000, "header and 2,999 good rows");
}

#[test]
fn stop_is_the_default_and_names_the_first_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("dirty.csv");
    let out = sluice(dir.path(), &["copy", src.to_str().unwrap(), "out.ndjson"]);
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("dirty.csv:6"), "{stderr}");
    assert!(stderr.contains("--on-error"), "the fix is named: {stderr}");
}

#[test]
fn skip_counts_and_max_errors_stops() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("dirty.csv");
    let stderr = ok(&sluice(
        dir.path(),
        &["copy", src.to_str().unwrap(), "out.csv", "--on-error", "skip"],
    ));
    assert!(stderr.contains("2 rejected row(s) skipped"), "{stderr}");
    assert!(!dir.path().join("rejects.ndjson").exists());

    let out = sluice(
        dir.path(),
        &[
            "copy",
            src.to_str().unwrap(),
            "out2.csv",
            "--on-error",
            "skip",
            "--max-errors",
            "1",
        ],
    );
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_errors = 1"));
}

#[test]
fn formats_round_trip_with_equal_values() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("a.csv"),
        "id,name,price,day,ok\n1,Zoë,1.50,2024-02-29,true\n2,\"comma, inside\",,2024-03-01,false\n3,日本,-7.25,,true\n",
    )
    .unwrap();
    // csv → parquet → ndjson.zst → json → csv.gz → ndjson
    ok(&sluice(d, &["copy", "a.csv", "b.parquet"]));
    ok(&sluice(d, &["copy", "b.parquet", "c.ndjson.zst"]));
    ok(&sluice(d, &["copy", "c.ndjson.zst", "d.json"]));
    ok(&sluice(d, &["copy", "d.json", "e.csv.gz"]));
    ok(&sluice(d, &["copy", "e.csv.gz", "f.ndjson"]));
    let rows = ndjson(&d.join("f.ndjson"));
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["name"], "Zoë");
    assert_eq!(rows[0]["price"], 1.5);
    assert_eq!(rows[0]["day"], "2024-02-29");
    assert_eq!(rows[0]["ok"], true);
    assert_eq!(rows[1]["name"], "comma, inside");
    assert!(rows[1].get("price").is_none_or(|p| p.is_null()));
    assert_eq!(rows[2]["name"], "日本");
    assert_eq!(rows[2]["price"], -7.25);
    let batches = parquet_rows(&d.join("b.parquet"));
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
    // The JSON array file is one valid document.
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("d.json")).unwrap()).unwrap();
    assert_eq!(doc.as_array().map(|a| a.len()), Some(3));
    assert!(!d.join("b.parquet.part").exists(), "no partial files are left");
}

#[test]
fn a_stray_quote_in_an_unquoted_field_is_text_not_the_start_of_a_quoted_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("boards.csv"),
        "id,size,note\n1,5\"7,short\n2,6'2,\"quoted, with comma\"\n3,9\"1,\"say \"\"hi\"\"\"\n4,x,y\n",
    )
    .unwrap();
    let err = ok(&sluice(dir.path(), &["copy", "boards.csv", "out.ndjson"]));
    let rows = ndjson(&dir.path().join("out.ndjson"));
    assert_eq!(rows.len(), 4, "{err}");
    assert_eq!(rows[0]["size"], "5\"7");
    assert_eq!(rows[1]["note"], "quoted, with comma");
    assert_eq!(rows[2]["note"], "say \"hi\"");
    assert_eq!(rows[3]["id"], 4);
}

#[test]
fn csv_output_dialect_null_text_escape_and_tsv() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.ndjson"),
        "{\"a\":1,\"b\":null,\"c\":\"say \\\"hi\\\"\"}\n{\"a\":2,\"b\":\"x\",\"c\":\"plain\"}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        "[source]\ntype = \"file\"\npath = \"in.ndjson\"\n\n[[sinks]]\ntype = \"file\"\npath = \"out.csv\"\ncsv.null = \"NA\"\ncsv.escape = \"\\\\\"\n",
    )
    .unwrap();
    ok(&sluice(dir.path(), &["run", "p.toml"]));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.csv")).unwrap(),
        "a,b,c\n1,NA,\"say \\\"hi\\\"\"\n2,x,plain\n"
    );
    ok(&sluice(dir.path(), &["copy", "in.ndjson", "out.tsv"]));
    let tsv = std::fs::read_to_string(dir.path().join("out.tsv")).unwrap();
    assert!(tsv.starts_with("a\tb\tc\n1\t\t"), "{tsv:?}");
}

#[test]
fn stdin_to_a_preview_table_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["copy", "-", "-", "--input-format", "csv", "--format", "table", "-q"])
        .current_dir(dir.path())
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"city,pop\nLagos,15000000\nLima,10000000\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    ok(&out);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("| Lagos | 15000000 |"), "{table}");
    assert!(table.contains("(2 rows)"), "{table}");
}

#[test]
fn sqlite_upsert_updates_in_place_and_sqlite_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("v1.csv"), "id,name,qty\n1,bolt,10\n2,nut,20\n").unwrap();
    std::fs::write(d.join("v2.csv"), "id,name,qty\n2,nut,25\n3,washer,5\n").unwrap();
    let url = "sqlite://stock.db?table=items&mode=upsert&key=id";
    ok(&sluice(d, &["copy", "v1.csv", url]));
    ok(&sluice(d, &["copy", "v2.csv", url]));
    let db = rusqlite::Connection::open(d.join("stock.db")).unwrap();
    let rows: Vec<(i64, String, i64)> = db
        .prepare("SELECT id, name, qty FROM items ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        rows,
        vec![(1, "bolt".into(), 10), (2, "nut".into(), 25), (3, "washer".into(), 5)]
    );

    ok(&sluice(d, &["copy", "sqlite://stock.db?table=items", "items.ndjson"]));
    let back = ndjson(&d.join("items.ndjson"));
    assert_eq!(back.len(), 3);
    assert_eq!(back[1]["qty"], 25);
}

#[test]
fn upsert_without_a_key_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.csv"), "id\n1\n").unwrap();
    let out = sluice(dir.path(), &["copy", "a.csv", "sqlite://x.db?table=t&mode=upsert"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs key"));
    assert!(
        !dir.path().join("x.db").exists(),
        "nothing is created before the config is valid"
    );
}

#[test]
fn interrupt_drains_and_leaves_a_valid_parquet_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut f = std::io::BufWriter::new(std::fs::File::create(d.join("big.csv")).unwrap());
    writeln!(f, "id,label,value").unwrap();
    for i in 0..3_000_000u64 {
        writeln!(f, "{i},row-{i},{}", i % 977).unwrap();
    }
    drop(f);
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["copy", "big.csv", "big.parquet", "--no-progress"])
        .current_dir(d)
        .env("XDG_STATE_HOME", d.join("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the first row group is on disk, however fast the machine.
    let part = d.join("big.parquet.part");
    let started = std::time::Instant::now();
    while std::fs::metadata(&part).map_or(0, |m| m.len()) == 0 && started.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let rows: usize = parquet_rows(&d.join("big.parquet")).iter().map(|b| b.num_rows()).sum();
    assert!(rows > 0 && rows < 3_000_000, "a valid, partial file: {rows} rows");
    // What the summary says was written is what the file holds.
    let written = stderr
        .lines()
        .find(|l| l.contains("big.parquet"))
        .unwrap_or_default()
        .replace(',', "");
    assert!(
        written.contains(&format!(" {rows} ")),
        "summary {written} vs file {rows}"
    );
}

/// Starts `sluice copy - out.ndjson` reading CSV from a pipe the test holds.
fn copy_from_pipe(dir: &std::path::Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["copy", "-", "out.ndjson", "--input-format", "csv", "--no-progress"])
        .current_dir(dir)
        .env("XDG_STATE_HOME", dir.join("state"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn interrupt_with_a_quiet_stdin_still_delivers_what_arrived() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = copy_from_pipe(dir.path());
    // Rows arrive, then the producer goes quiet without closing the pipe.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"id,word\n1,one\n2,two\n3,three\n").unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let rows = ndjson(&dir.path().join("out.ndjson"));
    assert_eq!(rows.len(), 3, "{stderr}");
    assert_eq!(rows[2]["word"], "three");
}

#[test]
fn interrupt_before_any_input_arrives_exits_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = copy_from_pipe(dir.path());
    let stdin = child.stdin.take().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed().as_secs() < 10, "took {:?}", started.elapsed());
}

#[test]
fn a_reader_closing_stdout_early_is_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let films = crate::repo().join("examples/data/films.csv");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["copy", films.to_str().unwrap(), "-", "--no-progress"])
        .current_dir(dir.path())
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the header, then hang up, as `| head -1` does.
    let mut first = [0u8; 7];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    assert_eq!(&first, b"film_id");
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
