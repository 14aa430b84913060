//! The README's first command: the quickstart pipeline.

use crate::{ok, parquet_rows, repo, sluice};

#[test]
fn quickstart_loads_the_family_catalogue_into_sqlite_and_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let examples = dir.path().join("examples");
    std::fs::create_dir_all(examples.join("data")).unwrap();
    for f in ["quickstart.toml", "data/films.csv"] {
        std::fs::copy(repo().join("examples").join(f), examples.join(f)).unwrap();
    }
    let stderr = ok(&sluice(dir.path(), &["run", "examples/quickstart.toml"]));
    assert!(stderr.contains("films"), "summary names the stream: {stderr}");
    // Every row read is accounted for: 1,000 = 790 written + 0 rejected + 210 filtered.
    let row = stderr.lines().find(|l| l.contains("films ")).unwrap_or_default();
    let cells: Vec<&str> = row.split('┆').map(str::trim).collect();
    assert_eq!(cells[1..5], ["1,000", "790", "0", "210"], "{stderr}");

    // 1,000 films, 210 of them NC-17.
    let db = rusqlite::Connection::open(dir.path().join("out/quickstart.db")).unwrap();
    let (n, ratings): (i64, i64) = db
        .query_row("SELECT count(*), count(DISTINCT rating) FROM films", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((n, ratings), (790, 4));
    let nc17: i64 = db
        .query_row("SELECT count(*) FROM films WHERE rating = 'NC-17'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(nc17, 0);
    let (title, minutes, class, rate, period, trailer): (String, i64, String, String, String, i64) = db
        .query_row(
            "SELECT title, minutes, length_class, rental_rate, price_per_rental_period, has_trailer FROM films WHERE film_id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
        )
        .unwrap();
    assert_eq!(
        (title.as_str(), minutes, class.as_str()),
        ("Academy Dinosaur", 86, "short")
    );
    // Decimals stay exact: 0.99 × 6 days.
    assert_eq!((rate.as_str(), period.as_str(), trailer), ("0.99", "5.94", 0));
    let long: i64 = db
        .query_row("SELECT count(*) FROM films WHERE length_class = 'long'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(long > 0 && long < 790);

    let batches = parquet_rows(&dir.path().join("out/films.parquet"));
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 790);
    let schema = batches[0].schema();
    assert_eq!(
        schema.field_with_name("rental_rate").unwrap().data_type(),
        &arrow::datatypes::DataType::Decimal128(5, 2)
    );
    assert!(
        schema.field_with_name("special_features").is_err(),
        "the sql transform selected columns"
    );

    // Running it again replaces the table rather than doubling it.
    ok(&sluice(dir.path(), &["run", "examples/quickstart.toml"]));
    let n: i64 = db.query_row("SELECT count(*) FROM films", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 790);

    // verify reads the CSV through the same transforms and both outputs back.
    let out = sluice(dir.path(), &["verify", "examples/quickstart.toml"]);
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{shown}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(shown.matches("790 ┆         790").count(), 2, "{shown}");
    assert_eq!(shown.matches("match").count(), 2, "{shown}");

    // One changed value in the Parquet output is a difference.
    let mut changed = batches[0].clone();
    let title = changed.schema().index_of("title").unwrap();
    let mut titles: Vec<Option<String>> = changed
        .column(title)
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .unwrap()
        .iter()
        .map(|t| t.map(str::to_string))
        .collect();
    titles[0] = Some("Changed".into());
    let mut columns = changed.columns().to_vec();
    columns[title] = std::sync::Arc::new(arrow::array::StringArray::from(titles));
    changed = arrow::array::RecordBatch::try_new(changed.schema(), columns).unwrap();
    let file = std::fs::File::create(dir.path().join("out/films.parquet")).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, changed.schema(), None).unwrap();
    writer.write(&changed).unwrap();
    for b in &batches[1..] {
        writer.write(b).unwrap();
    }
    writer.close().unwrap();
    let out = sluice(dir.path(), &["verify", "examples/quickstart.toml"]);
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert_eq!(shown.matches("DIFFERENT").count(), 1, "{shown}");
}
