//! Files as people have them, and as a hostile user writes them: late-typed
//! columns, odd line endings, broken quoting, numbers beyond 64 bits, legacy
//! encodings, stream names that try to leave the destination. Every value
//! arrives equal, or is rejected naming its line; none disappears.

use std::path::Path;

use crate::{ndjson, ok, sluice};

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

#[test]
fn a_column_empty_in_the_inference_sample_keeps_its_later_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("id,note\n");
    for i in 1..=2000 {
        csv.push_str(&format!("{i},\n"));
    }
    csv.push_str("2001,hello\n");
    write(dir.path(), "late.csv", csv);
    ok(&sluice(dir.path(), &["copy", "late.csv", "out.ndjson"]));
    let rows = ndjson(&dir.path().join("out.ndjson"));
    assert_eq!(rows.len(), 2001);
    assert_eq!(rows[2000]["id"], 2001);
    assert_eq!(rows[2000]["note"], "hello");
}

#[test]
fn a_first_record_bigger_than_the_sample_is_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let big = "x".repeat(5 << 20);
    write(dir.path(), "wide.csv", format!("id,blob\n1,{big}\n2,small\n"));
    ok(&sluice(dir.path(), &["copy", "wide.csv", "out.ndjson"]));
    let rows = ndjson(&dir.path().join("out.ndjson"));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["blob"].as_str().map(str::len), Some(5 << 20));
    assert_eq!(rows[1]["blob"], "small");
}

#[test]
fn carriage_return_line_endings_are_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("id,name\r");
    for i in 1..=1000 {
        csv.push_str(&format!("{i},n{i}\r"));
    }
    write(dir.path(), "mac.csv", csv);
    ok(&sluice(dir.path(), &["copy", "mac.csv", "out.ndjson"]));
    let rows = ndjson(&dir.path().join("out.ndjson"));
    assert_eq!(rows.len(), 1000);
    assert_eq!(rows[999]["name"], "n1000");
}

#[test]
fn an_unterminated_quote_is_refused_with_its_line_not_swallowed() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("id,name\n");
    for i in 1..=100_000 {
        if i == 11 {
            csv.push_str("11,\"oops\n");
        } else {
            csv.push_str(&format!("{i},n{i}\n"));
        }
    }
    write(dir.path(), "broken.csv", csv);
    // The default stops and names the line.
    let out = sluice(dir.path(), &["copy", "broken.csv", "out.ndjson"]);
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.csv:12"), "{stderr}");
    assert!(stderr.contains("never closed"), "{stderr}");
    // With a dead-letter file the rows before it arrive and the rest is one
    // rejection holding every byte, not a row.
    ok(&sluice(
        dir.path(),
        &["copy", "broken.csv", "dl.ndjson", "--on-error", "dlq", "--fresh"],
    ));
    assert_eq!(ndjson(&dir.path().join("dl.ndjson")).len(), 10);
    let bad = ndjson(&dir.path().join("rejects.ndjson"));
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["line"], 12);
    assert!(bad[0]["raw"].as_str().unwrap().ends_with("100000,n100000"));
}

#[test]
fn a_line_of_spaces_is_its_own_rejection_and_the_row_before_it_arrives() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ws.csv", "id,name\n1,a\n   \n2,b\n");
    ok(&sluice(
        dir.path(),
        &["copy", "ws.csv", "out.ndjson", "--on-error", "dlq"],
    ));
    let rows = ndjson(&dir.path().join("out.ndjson"));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["name"], "a");
    let bad = ndjson(&dir.path().join("rejects.ndjson"));
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["line"], 3);
    assert!(bad[0]["reason"].as_str().unwrap().contains("expected 2"), "{}", bad[0]);
}

#[test]
fn integers_beyond_64_bits_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "big.ndjson",
        "{\"id\":1,\"n\":9223372036854775807}\n{\"id\":2,\"n\":9223372036854775808}\n\
         {\"id\":3,\"n\":123456789012345678901234567890}\n{\"id\":4,\"n\":-5}\n",
    );
    ok(&sluice(dir.path(), &["copy", "big.ndjson", "out.csv"]));
    let out = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
    let values: Vec<&str> = out.lines().skip(1).map(|l| l.split(',').nth(1).unwrap()).collect();
    assert_eq!(
        values,
        [
            "9223372036854775807",
            "9223372036854775808",
            "123456789012345678901234567890",
            "-5"
        ]
    );
}

#[test]
fn a_number_too_large_for_a_float_is_rejected_not_infinity() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "huge.ndjson", "{\"x\":1.5}\n{\"x\":1e400}\n{\"x\":2.5}\n");
    ok(&sluice(
        dir.path(),
        &["copy", "huge.ndjson", "out.ndjson", "--on-error", "dlq"],
    ));
    let rows = ndjson(&dir.path().join("out.ndjson"));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["x"], 2.5);
    let bad = ndjson(&dir.path().join("rejects.ndjson"));
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["line"], 2);
    assert!(bad[0]["reason"].as_str().unwrap().contains("too large"), "{}", bad[0]);
}

#[test]
fn non_finite_floats_survive_json_output_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "f.csv", "id,x\n1,1.5\n2,NaN\n3,inf\n4,-inf\n5,\n");
    write(
        dir.path(),
        "p.toml",
        "[source]\ntype = \"file\"\npath = \"f.csv\"\n[source.schema]\nx = \"float64\"\n[[sinks]]\ntype = \"file\"\npath = \"out.ndjson\"\n",
    );
    ok(&sluice(dir.path(), &["run", "p.toml"]));
    let rows = ndjson(&dir.path().join("out.ndjson"));
    let xs: Vec<&serde_json::Value> = rows.iter().map(|r| &r["x"]).collect();
    assert_eq!(xs[0], 1.5);
    assert_eq!(xs[1], "NaN");
    assert_eq!(xs[2], "Infinity");
    assert_eq!(xs[3], "-Infinity");
    assert!(xs[4].is_null());
    // Read back with the column declared a float: the same values.
    write(
        dir.path(),
        "back.toml",
        "[source]\ntype = \"file\"\npath = \"out.ndjson\"\n[source.schema]\nx = \"float64\"\n[[sinks]]\ntype = \"file\"\npath = \"back.csv\"\n",
    );
    ok(&sluice(dir.path(), &["run", "back.toml"]));
    let back = std::fs::read_to_string(dir.path().join("back.csv")).unwrap();
    let xs: Vec<&str> = back.lines().skip(1).map(|l| l.split(',').nth(1).unwrap()).collect();
    assert_eq!(xs, ["1.5", "NaN", "inf", "-inf", ""]);
}

#[test]
fn windows_1252_input_reads_with_its_encoding_and_utf8_errors_say_how() {
    let dir = tempfile::tempdir().unwrap();
    // "Zoë €5" and "José €12,50" in Windows-1252.
    write(
        dir.path(),
        "excel.csv",
        b"name,price\r\nZo\xeb,\x805\r\nJos\xe9,\"\x8012,50\"\r\n".as_slice(),
    );
    let out = sluice(dir.path(), &["copy", "excel.csv", "plain.ndjson"]);
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("excel.csv:2") && stderr.contains("encoding"),
        "{stderr}"
    );
    // Read as UTF-8 with a dead-letter file, the undecodable rows are
    // isolated with their line and the hint; none is mangled.
    write(
        dir.path(),
        "mixed.csv",
        b"name,price\nplain,1\nZo\xeb,\x805\nalso plain,2\n".as_slice(),
    );
    ok(&sluice(
        dir.path(),
        &["copy", "mixed.csv", "mixed.ndjson", "--on-error", "dlq"],
    ));
    assert_eq!(ndjson(&dir.path().join("mixed.ndjson")).len(), 2);
    let bad = ndjson(&dir.path().join("rejects.ndjson"));
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["line"], 3);
    assert!(bad[0]["reason"].as_str().unwrap().contains("encoding"), "{}", bad[0]);

    ok(&sluice(
        dir.path(),
        &["copy", "excel.csv", "out.ndjson", "--encoding", "windows-1252"],
    ));
    let rows = ndjson(&dir.path().join("out.ndjson"));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["name"], "Zoë");
    assert_eq!(rows[0]["price"], "€5");
    assert_eq!(rows[1]["name"], "José");
    assert_eq!(rows[1]["price"], "€12,50");

    // UTF-16 is recognised by its byte-order mark.
    let utf16: Vec<u8> = [0xff, 0xfe]
        .into_iter()
        .chain("name\nZoë €\n".encode_utf16().flat_map(|u| u.to_le_bytes()))
        .collect();
    write(dir.path(), "u16.csv", utf16);
    ok(&sluice(dir.path(), &["copy", "u16.csv", "u16.ndjson"]));
    assert_eq!(ndjson(&dir.path().join("u16.ndjson"))[0]["name"], "Zoë €");
}

#[test]
fn a_stream_name_cannot_write_outside_the_destination() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("work");
    std::fs::create_dir_all(root.join("out")).unwrap();
    write(&root, "t.csv", "id\n1\n");
    write(
        &root,
        "p.toml",
        "[source]\ntype = \"file\"\npath = \"t.csv\"\nstream = \"../../escaped\"\n[[sinks]]\ntype = \"file\"\npath = \"out/{stream}.ndjson\"\n",
    );
    ok(&sluice(&root, &["run", "p.toml"]));
    assert!(!dir.path().join("escaped.ndjson").exists());
    let inside: Vec<String> = std::fs::read_dir(root.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(inside, ["_.._.._escaped.ndjson"]);
}

#[test]
fn secrets_in_any_url_form_never_show_in_errors_or_state() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "t.csv", "id\n1\n");
    // Nothing listens on port 1: every run fails to connect and says so.
    let urls = [
        "postgres://u:pa/ss-w0rd@127.0.0.1:1/db",
        "postgres://u@127.0.0.1:1/db?password=pa/ss-w0rd",
        "postgres://127.0.0.1:1/db?user=u&sslpassword=pa/ss-w0rd",
        "mysql://root:pa/ss-w0rd@127.0.0.1:1/test",
        "mysql://root@127.0.0.1:1/test?password=pa/ss-w0rd",
    ];
    for url in urls {
        for args in [["copy", "t.csv", url], ["copy", url, "out.csv"]] {
            let out = sluice(dir.path(), &args);
            assert_ne!(out.status.code(), Some(0), "{url}");
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!all.contains("w0rd"), "{url} leaked: {all}");
            assert!(all.contains("***"), "{url}: {all}");
        }
    }
    let stored = walk(&dir.path().join("state"));
    assert!(
        stored.iter().any(|p| p.ends_with("state.db")),
        "runs are recorded: {stored:?}"
    );
    for entry in stored {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(4).any(|w| w == b"w0rd"),
            "{} holds the password",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn verify_finds_a_difference_when_the_target_lacks_a_column() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "t.csv", "id,name,score\n1,a,10\n2,b,20\n");
    write(
        dir.path(),
        "p.toml",
        "[source]\ntype = \"file\"\npath = \"t.csv\"\n[[sinks]]\ntype = \"sqlite\"\npath = \"out.db\"\n",
    );
    ok(&sluice(dir.path(), &["run", "p.toml"]));
    ok(&sluice(dir.path(), &["verify", "p.toml"]));
    rusqlite::Connection::open(dir.path().join("out.db"))
        .unwrap()
        .execute_batch("ALTER TABLE t DROP COLUMN score")
        .unwrap();
    let out = sluice(dir.path(), &["verify", "p.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("score"), "{stdout}");
}

#[test]
fn a_directory_as_source_or_destination_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("exports")).unwrap();
    write(dir.path(), "t.csv", "id\n1\n");
    for args in [["copy", "exports", "out.csv"], ["copy", "t.csv", "exports"]] {
        let out = sluice(dir.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("`exports` is a directory"), "{stderr}");
    }
    ok(&sluice(dir.path(), &["copy", "t.csv", "exports/"]));
    assert!(dir.path().join("exports/t.ndjson").exists());
}

/// The read, written, rejected and filtered counts of `stream` in a
/// summary or status table.
fn counts(table: &str, stream: &str, first: usize) -> Vec<u64> {
    let line = table
        .lines()
        .find(|l| {
            l.split('┆')
                .any(|c| c.trim_matches(|c: char| c == '│' || c.is_whitespace()) == stream)
        })
        .unwrap_or_else(|| panic!("no row for {stream} in\n{table}"));
    line.split('┆')
        .skip(first)
        .take(4)
        .map(|c| c.trim().replace(',', "").parse().unwrap_or_else(|_| panic!("{line}")))
        .collect()
}

#[test]
fn summary_and_status_account_for_every_row_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("id,score\n");
    for i in 1..=10 {
        // Rows 3, 6 and 9 break the destination's CHECK; row 10 does not parse.
        match i {
            3 | 6 | 9 => csv.push_str(&format!("{i},-1\n")),
            10 => csv.push_str("10,ten\n"),
            _ => csv.push_str(&format!("{i},{}\n", i * 10)),
        }
    }
    write(dir.path(), "t.csv", csv);
    rusqlite::Connection::open(dir.path().join("out.db"))
        .unwrap()
        .execute_batch("CREATE TABLE t (id INTEGER, score INTEGER CHECK (score >= 0))")
        .unwrap();
    // A filter removes rows 1 and 2.
    write(
        dir.path(),
        "p.toml",
        "[source]\ntype = \"file\"\npath = \"t.csv\"\ninfer_rows = 5\n[[transforms]]\ntype = \"filter\"\npredicate = \"id > 2\"\n\
         [[sinks]]\ntype = \"sqlite\"\npath = \"out.db\"\n[runtime]\non_error = \"dlq\"\n",
    );
    let stderr = ok(&sluice(dir.path(), &["run", "p.toml"]));
    // read = written + rejected + filtered: 10 = 4 + (3 refused + 1 unparsable) + 2
    assert_eq!(counts(&stderr, "t", 1), [10, 4, 4, 2], "{stderr}");
    assert!(stderr.contains("4 rejected row(s) written to"), "{stderr}");
    let n: i64 = rusqlite::Connection::open(dir.path().join("out.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 4);
    let status = sluice(dir.path(), &["status", "p.toml"]);
    let shown = String::from_utf8_lossy(&status.stdout);
    assert_eq!(counts(&shown, "t", 5), [10, 4, 4, 2], "{shown}");
}
