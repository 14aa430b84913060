//! Pipeline files: validation errors, transforms, nested JSON.

use crate::{fixture, ndjson, ok, sluice};

#[test]
fn validate_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.toml");
    std::fs::write(
        &p,
        "[source]\ntype = \"file\"\npath = \"in.csv\"\n\n[[sinks]]\ntype = \"null\"\n\n[runtime]\non_eror = \"skip\"\n",
    )
    .unwrap();
    let out = sluice(dir.path(), &["validate", "p.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("p.toml:9:1"), "{stderr}");
    assert!(stderr.contains("on_eror"), "{stderr}");

    // A misspelled transform key is refused, not ignored for a default.
    std::fs::write(
        &p,
        "[source]\ntype = \"file\"\npath = \"in.json\"\n\n[[transforms]]\ntype = \"drop_fields\"\nfeilds = [\"_ref\"]\n\n[[sinks]]\ntype = \"null\"\n",
    )
    .unwrap();
    let out = sluice(dir.path(), &["validate", "p.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("feilds") && stderr.contains("p.toml:"), "{stderr}");

    std::fs::write(
        &p,
        "[source]\ntype = \"file\"\npath = \"in.csv\"\n\n[[sinks]]\ntype = \"null\"\n",
    )
    .unwrap();
    let out = sluice(dir.path(), &["validate", "p.toml"]);
    assert!(
        out.status.success(),
        "in.csv need not exist to validate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn transforms_shape_rows_and_reject_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("orders.csv"),
        "order_id,customer,amount,status,email\n\
         1,ann,10.00,open,ann@example.com\n\
         2,bob,-5,open,bob@example.com\n\
         3,cy,7.5,lost,cy@example.com\n\
         4,dee,abc,open,dee@example.com\n\
         5,,3,closed,nobody\n\
         1,ann,9,open,ann@example.com\n",
    )
    .unwrap();
    std::fs::write(
        d.join("p.toml"),
        r#"
[source]
type = "csv"
path = "orders.csv"

[[transforms]]
type = "cast"
columns = { amount = "decimal(10,2)" }

[[transforms]]
type = "validate"
required = ["customer"]
unique = ["order_id"]
allowed = { status = ["open", "closed"] }
regex = { email = '^[^@]+@[^@]+$' }

[[transforms]]
type = "filter"
predicate = "amount > 0"

[[transforms]]
type = "set"
columns = { amount_cents = "CAST(amount * 100 AS BIGINT)", customer = "upper(customer)" }

[[transforms]]
type = "rename"
columns = { order_id = "id" }

[[transforms]]
type = "drop"
columns = ["email"]

[[sinks]]
type = "file"
path = "out.ndjson"

[runtime]
on_error = "dlq"
dlq_path = "bad.ndjson"
"#,
    )
    .unwrap();
    ok(&sluice(d, &["run", "p.toml"]));
    let rows = ndjson(&d.join("out.ndjson"));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["id"], 1);
    assert_eq!(rows[0]["customer"], "ANN");
    assert_eq!(rows[0]["amount_cents"], 1000);
    assert!(rows[0].get("email").is_none());
    let bad = ndjson(&d.join("bad.ndjson"));
    let by_line: Vec<(u64, String)> = bad
        .iter()
        .map(|b| (b["line"].as_u64().unwrap(), b["reason"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(by_line.len(), 4, "{by_line:?}");
    assert!(
        by_line
            .iter()
            .any(|(l, r)| *l == 4 && r.contains("'lost' is not one of")),
        "{by_line:?}"
    );
    assert!(
        by_line.iter().any(|(l, r)| *l == 5 && r.contains("cannot cast 'abc'")),
        "{by_line:?}"
    );
    assert!(
        by_line
            .iter()
            .any(|(l, r)| *l == 6 && r.contains("`customer` is required") && r.contains("nobody")),
        "{by_line:?}"
    );
    assert!(
        by_line.iter().any(|(l, r)| *l == 7 && r.contains("duplicate")),
        "{by_line:?}"
    );
    // Rejected rows carry the record as it was when refused.
    assert!(bad.iter().all(|b| b["record"].is_object()));
}

#[test]
fn aggregation_runs_over_the_whole_stream() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("s.csv"), "region,amount\neu,1\nus,2\neu,3\nus,4\neu,5\n").unwrap();
    std::fs::write(
        d.join("p.toml"),
        "[source]\ntype = \"csv\"\npath = \"s.csv\"\n\n[[transforms]]\ntype = \"sql\"\nquery = \"SELECT region, sum(amount) AS total, count(*) AS n FROM input GROUP BY region ORDER BY region\"\n\n[[sinks]]\ntype = \"ndjson\"\npath = \"t.ndjson\"\n\n[runtime]\nbatch_rows = 2\n",
    )
    .unwrap();
    ok(&sluice(d, &["run", "p.toml"]));
    let rows = ndjson(&d.join("t.ndjson"));
    assert_eq!(
        rows,
        vec![
            serde_json::json!({"region": "eu", "total": 9, "n": 3}),
            serde_json::json!({"region": "us", "total": 6, "n": 2})
        ]
    );
}

#[test]
fn rally_metadata_is_dropped_at_every_depth() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = fixture("rally.json");
    std::fs::write(
        d.join("p.toml"),
        format!("[source]\ntype = \"json\"\npath = '{}'\n\n[[transforms]]\ntype = \"drop_fields\"\n\n[[sinks]]\ntype = \"ndjson\"\npath = \"clean.ndjson\"\n", src.display()),
    )
    .unwrap();
    ok(&sluice(d, &["run", "p.toml"]));
    let rows = ndjson(&d.join("clean.ndjson"));
    assert_eq!(rows.len(), 2);
    let text = std::fs::read_to_string(d.join("clean.ndjson")).unwrap();
    for field in [
        "_rallyAPIMajor",
        "_rallyAPIMinor",
        "_ref",
        "_refObjectUUID",
        "_objectVersion",
        "_CreatedAt",
    ] {
        assert!(!text.contains(field), "{field} left in {text}");
    }
    assert_eq!(rows[0]["Owner"]["DisplayName"], "Ann");
    assert_eq!(rows[0]["Tags"][0]["Name"], "auth");
    assert_eq!(rows[1]["FormattedID"], "DE2");
}

#[test]
fn glob_reads_every_file_and_refuses_a_different_header() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("in")).unwrap();
    std::fs::write(d.join("in/a.csv"), "k,v\n1,x\n2,y\n").unwrap();
    std::fs::write(d.join("in/b.csv"), "k,v\n3,z\n").unwrap();
    ok(&sluice(d, &["copy", "in/*.csv", "all.ndjson", "--parallelism", "1"]));
    let ks: Vec<i64> = ndjson(&d.join("all.ndjson"))
        .iter()
        .map(|r| r["k"].as_i64().unwrap())
        .collect();
    assert_eq!(ks, [1, 2, 3]);

    std::fs::write(d.join("in/c.csv"), "k,w\n4,q\n").unwrap();
    let out = sluice(d, &["copy", "in/*.csv", "all2.ndjson"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in/c.csv:1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn status_reports_a_finished_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.csv"), "x\n1\n2\n").unwrap();
    ok(&sluice(dir.path(), &["copy", "a.csv", "null://"]));
    let out = sluice(dir.path(), &["status"]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("completed") && text.contains("┆ a "), "{text}");
}

#[test]
fn list_names_connectors_and_transforms() {
    let dir = tempfile::tempdir().unwrap();
    let out = sluice(dir.path(), &["list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for word in [
        "sqlite (sink)",
        "file (source)",
        "csv.delimiter",
        "drop_fields",
        "on_error",
    ] {
        assert!(text.contains(word), "{word} missing from:\n{text}");
    }
}
