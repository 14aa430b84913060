//! MySQL/MariaDB source and sink against a real server
//! (`SLUICE_TEST_MYSQL_URL`, default `mysql://root@127.0.0.1:3306/test`).
//! Each test works in its own database and drops it at the end.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use arrow::array::{Array, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use sluice_connectors::mysql::{MysqlSink, MysqlSinkConfig, MysqlSource, MysqlSourceConfig, WriteMode, ZeroDates};
use sluice_core::{
    Batch, BatchLimits, ReadContext, Rejection, Sink, SinkConnector, Source, SourceEvent, StreamInfo, StreamSpec,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A database of its own for one test.
struct TestDb {
    url: String,
    conn: Conn,
    name: String,
}

impl TestDb {
    /// Creates `sluice_t_<unique>`; `None` (after a loud message) when the server is down outside CI.
    async fn create() -> Option<TestDb> {
        static N: AtomicU32 = AtomicU32::new(0);
        let base = std::env::var("SLUICE_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
        let mut conn = match Conn::from_url(&base).await {
            Ok(c) => c,
            Err(e) => {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("MariaDB not reachable at {base}: {e}");
                }
                eprintln!("SKIPPED: MariaDB not reachable at {base}: {e}");
                return None;
            }
        };
        let unique = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() % 1_000_000_000)
            .unwrap_or(0);
        let name = format!(
            "sluice_t_{}_{}_{}",
            std::process::id(),
            unique,
            N.fetch_add(1, Ordering::Relaxed)
        );
        conn.query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            .await
            .unwrap();
        conn.query_drop(format!("USE `{name}`")).await.unwrap();
        let head = base.rsplit_once('/').map(|(h, _)| h).unwrap_or(&base);
        Some(TestDb {
            url: format!("{head}/{name}"),
            conn,
            name,
        })
    }

    async fn exec(&mut self, sql: &str) {
        self.conn.query_drop(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn rows(&mut self, sql: &str) -> Vec<Row> {
        self.conn.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    async fn count(&mut self, sql: &str) -> u64 {
        self.conn
            .query_first::<u64, _>(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .unwrap_or(0)
    }

    /// Drops the database, unless `SLUICE_TEST_KEEP=1` (to inspect it).
    async fn drop(mut self) {
        if std::env::var("SLUICE_TEST_KEEP").as_deref() == Ok("1") {
            eprintln!("kept database {}", self.name);
            return;
        }
        let _ = self.conn.query_drop(format!("DROP DATABASE `{}`", self.name)).await;
        let _ = self.conn.disconnect().await;
    }

    fn source(&self, table: &str) -> MysqlSourceConfig {
        MysqlSourceConfig {
            url: self.url.clone(),
            table: Some(table.into()),
            tables: Vec::new(),
            query: None,
            stream: None,
            partitions: None,
            zero_dates: ZeroDates::Null,
        }
    }

    fn sink(&self, table: &str, mode: WriteMode) -> MysqlSinkConfig {
        MysqlSinkConfig {
            url: self.url.clone(),
            table: table.into(),
            mode,
            key: Vec::new(),
            create: true,
            types: Default::default(),
            identifiers: Default::default(),
        }
    }
}

/// Reads every partition of `stream` concurrently into one list of events.
async fn read_all(source: &Arc<MysqlSource>, stream: &StreamSpec) -> Vec<SourceEvent> {
    let (tx, mut rx) = mpsc::channel(16);
    let mut tasks = Vec::new();
    for p in &stream.partitions {
        let (source, stream, p) = (source.clone(), stream.clone(), p.clone());
        let ctx = ReadContext {
            out: tx.clone(),
            cancel: CancellationToken::new(),
            limits: BatchLimits::default(),
            resume: None,
            parallelism: 1,
            payload: None,
        };
        tasks.push(tokio::spawn(async move { source.read(&stream, &p, ctx).await }));
    }
    drop(tx);
    let mut events = Vec::new();
    while let Some(ev) = rx.recv().await {
        events.push(ev);
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    events
}

/// Copies `table` through the source and a sink; returns source and sink rejections.
async fn copy(db: &TestDb, table: &str, sink: MysqlSinkConfig) -> (Vec<Rejection>, Vec<Rejection>) {
    let source = Arc::new(MysqlSource::new(db.source(table)).unwrap());
    let streams = source.discover().await.unwrap();
    let stream = &streams[0];
    let events = read_all(&source, stream).await;
    let sink = MysqlSink::new(sink).unwrap();
    let mut writer = sink
        .open(&StreamInfo::new(stream.name.clone(), stream.schema.clone(), "test"))
        .await
        .unwrap();
    let (mut source_rej, mut sink_rej) = (Vec::new(), Vec::new());
    for ev in events {
        match ev {
            SourceEvent::Batch(b) => sink_rej.extend(writer.write(&b).await.unwrap()),
            SourceEvent::Reject(r) => source_rej.push(r),
            SourceEvent::Progress { .. } => {}
        }
    }
    writer.flush().await.unwrap();
    writer.finish(true).await.unwrap();
    (source_rej, sink_rej)
}

const ALL_TYPES: &str = "CREATE TABLE src (
    id int PRIMARY KEY AUTO_INCREMENT,
    ti tinyint, tu tinyint unsigned, si smallint, su smallint unsigned, mi mediumint, mu mediumint unsigned,
    i int, iu int unsigned, bi bigint, bu bigint unsigned,
    d12 decimal(12,2), d65 decimal(65,30), f float, dbl double,
    c char(10), vc varchar(100), tx text, lt longtext,
    bn binary(4), vb varbinary(300), bl blob, lb longblob,
    dt date, dtm datetime(6), ts timestamp(6) NULL DEFAULT NULL, tm time(6), yr year,
    en enum('a','b','c d'), st set('x','y','z'), js json, b1 bit(1), b64 bit(64), ti1 tinyint(1),
    KEY vc_idx (vc), UNIQUE KEY iu_idx (iu)
)";

const COLUMNS: &[&str] = &[
    "ti", "tu", "si", "su", "mi", "mu", "i", "iu", "bi", "bu", "d12", "d65", "f", "dbl", "c", "vc", "tx", "lt", "bn",
    "vb", "bl", "lb", "dt", "dtm", "ts", "tm", "yr", "en", "st", "js", "b1", "b64", "ti1",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips_mysql_to_mysql() {
    let Some(mut db) = TestDb::create().await else { return };
    db.exec(ALL_TYPES).await;
    db.exec("SET SESSION sql_mode = '', time_zone = '+00:00'").await;
    let all_bytes: String = (0..=255u8).map(|b| format!("{b:02X}")).collect();
    db.exec(&format!(
        "INSERT INTO src VALUES (1, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0,
         -9999999999.99, '-99999999999999999999999999999999999.999999999999999999999999999999', -3.40282e38,
         -1.7976931348623157e308, 'a', 'héllo 😀 中文', 'quote '' back\\\\ nul\\0 tab\t nl\n', REPEAT('x', 1048576),
         X'00010203', X'{all_bytes}', '', X'{all_bytes}',
         '1000-01-01', '1000-01-01 00:00:00.000000', '1970-01-01 00:00:01.000000', '00:00:00', 1901,
         'a', '', '{{\"a\": [1, 2, {{\"b\": null}}]}}', b'0', b'0', 0)"
    ))
    .await;
    db.exec(
        "INSERT INTO src VALUES (2, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295,
         9223372036854775807, 18446744073709551615, 9999999999.99,
         '99999999999999999999999999999999999.999999999999999999999999999999', 3.40282e38, 1.7976931348623157e308,
         'zzzzzzzzzz', '🎉 emoji 日本語 ✓', 'multi\nline', REPEAT('é中😀', 100000),
         X'FFFFFFFF', X'', X'00', X'FF00', '9999-12-31', '9999-12-31 23:59:59.999999',
         '2038-01-19 03:14:07.999999', '23:59:59.999999', 2155, 'c d', 'x,y,z', '[]', b'1',
         b'1111111111111111111111111111111111111111111111111111111111111111', 1)",
    )
    .await;
    db.exec("INSERT INTO src (id) VALUES (3)").await;
    db.exec(
        "INSERT INTO src (id, dt, dtm, ts, d12, f, dbl, yr, iu) VALUES (4, '0000-00-00', '0000-00-00 00:00:00', \
         '0000-00-00 00:00:00', 0.1, 1.2345678, 0.1, 0, 7)",
    )
    .await;
    db.exec("INSERT INTO src (id, f, dbl) VALUES (5, 16777217, 123456789.123)")
        .await;

    let (source_rej, sink_rej) = copy(&db, "src", db.sink("dst", WriteMode::Append)).await;
    assert!(source_rej.is_empty(), "{source_rej:?}");
    assert!(sink_rej.is_empty(), "{sink_rej:?}");
    assert_eq!(db.count("SELECT COUNT(*) FROM dst").await, 5);

    for col in COLUMNS {
        let differ = db
            .count(&format!(
                "SELECT COUNT(*) FROM src s LEFT JOIN dst d USING (id) WHERE NOT (s.{col} <=> d.{col} AND BINARY s.{col} <=> BINARY d.{col}) \
                 AND NOT (s.id = 4 AND d.{col} IS NULL AND s.{col} IN ('0000-00-00', '0000-00-00 00:00:00'))"
            ))
            .await;
        assert_eq!(differ, 0, "column {col} differs between src and dst");
    }
    // Zero dates became NULL.
    assert_eq!(
        db.count("SELECT COUNT(*) FROM dst WHERE id = 4 AND dt IS NULL AND dtm IS NULL AND ts IS NULL")
            .await,
        1
    );
    // The copy declares the same column types, key and indexes.
    let types = |t: &str| {
        format!(
            "SELECT GROUP_CONCAT(CONCAT(COLUMN_NAME, ' ', COLUMN_TYPE) ORDER BY ORDINAL_POSITION SEPARATOR ', ') \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{t}'"
        )
    };
    let (src, dst) = (db.rows(&types("src")).await, db.rows(&types("dst")).await);
    assert_eq!(src[0].get::<String, _>(0), dst[0].get::<String, _>(0));
    let indexes = "SELECT GROUP_CONCAT(DISTINCT CONCAT(INDEX_NAME, NON_UNIQUE) ORDER BY INDEX_NAME) \
                   FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ";
    let src_ix = db.rows(&format!("{indexes} 'src'")).await[0].get::<String, _>(0);
    let dst_ix = db.rows(&format!("{indexes} 'dst'")).await[0].get::<String, _>(0);
    assert_eq!(src_ix, dst_ix);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_outside_arrow_types_are_source_rejections_naming_table_column_and_key() {
    let Some(mut db) = TestDb::create().await else { return };
    db.exec("SET SESSION sql_mode = ''").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY, tm time, dt date)").await;
    db.exec("INSERT INTO t VALUES (1, '12:00:00', '2020-01-01'), (2, '25:00:00', '2020-01-01'), (3, '-01:00:00', NULL), (4, NULL, '0000-00-00')")
        .await;
    let mut cfg = db.source("t");
    cfg.zero_dates = ZeroDates::Reject;
    let source = Arc::new(MysqlSource::new(cfg).unwrap());
    let stream = source.discover().await.unwrap().remove(0);
    let events = read_all(&source, &stream).await;
    let rows: usize = events
        .iter()
        .map(|e| if let SourceEvent::Batch(b) = e { b.num_rows() } else { 0 })
        .sum();
    let rejects: Vec<&Rejection> = events
        .iter()
        .filter_map(|e| if let SourceEvent::Reject(r) = e { Some(r) } else { None })
        .collect();
    assert_eq!(rows, 1);
    assert_eq!(rejects.len(), 3, "{rejects:?}");
    assert!(rejects[0].reason.contains("column `tm`") && rejects[0].reason.contains("id = 2"));
    assert!(rejects[0].reason.contains(".t`") && rejects[0].reason.contains("outside"));
    assert!(rejects[2].reason.contains("column `dt`") && rejects[2].reason.contains("zero date"));
    db.drop().await;
}

fn id_name_batch(ids: std::ops::Range<i32>, name: impl Fn(i32) -> Option<String>) -> Batch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    let data = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int32Array::from_iter_values(ids.clone())),
            Arc::new(StringArray::from_iter(ids.map(name))),
        ],
    )
    .unwrap();
    Batch::new("s".into(), "test".into(), data)
}

async fn open(cfg: MysqlSinkConfig, batch: &Batch) -> Box<dyn Sink> {
    MysqlSink::new(cfg)
        .unwrap()
        .open(&StreamInfo::new("s".into(), batch.data.schema(), "test"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_are_isolated_and_the_rest_is_loaded() {
    let Some(mut db) = TestDb::create().await else { return };
    db.exec("CREATE TABLE narrow (id int PRIMARY KEY, name varchar(5) NOT NULL)")
        .await;
    let batch = id_name_batch(0..1000, |i| match i {
        100 => Some("toolong".into()),
        500 => None,
        900 => Some("abcdef".into()),
        _ => Some(format!("n{}", i % 1000)),
    });
    let mut sink = open(db.sink("narrow", WriteMode::Append), &batch).await;
    let rejections = sink.write(&batch).await.unwrap();
    sink.flush().await.unwrap();
    sink.finish(true).await.unwrap();
    assert_eq!(db.count("SELECT COUNT(*) FROM narrow").await, 997);
    let ids: Vec<i64> = rejections
        .iter()
        .map(|r| {
            let record: Option<serde_json::Value> = r.record.as_ref().and_then(|v| serde_json::from_str(v.get()).ok());
            record.and_then(|v| v["id"].as_i64()).unwrap_or(-1)
        })
        .collect();
    assert_eq!(ids, vec![100, 500, 900]);
    assert!(
        rejections[0].reason.contains("Data too long"),
        "{}",
        rejections[0].reason
    );
    assert!(
        rejections[1].reason.contains("cannot be null"),
        "{}",
        rejections[1].reason
    );
    assert!(rejections[2].reason.contains("narrow"));
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_updates_in_place_and_replace_publishes_only_complete_loads() {
    let Some(mut db) = TestDb::create().await else { return };
    let mut cfg = db.sink("u", WriteMode::Upsert);
    cfg.key = vec!["id".into()];
    let first = id_name_batch(1..101, |_| Some("a".into()));
    let mut sink = open(cfg.clone(), &first).await;
    assert!(sink.write(&first).await.unwrap().is_empty());
    let second = id_name_batch(51..151, |_| Some("b".into()));
    assert!(sink.write(&second).await.unwrap().is_empty());
    sink.flush().await.unwrap();
    sink.finish(true).await.unwrap();
    assert_eq!(db.count("SELECT COUNT(*) FROM u").await, 150);
    assert_eq!(db.count("SELECT COUNT(*) FROM u WHERE name = 'b'").await, 100);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM u WHERE name = 'a' AND id <= 50").await,
        50
    );

    // An existing table with no key to match on would make upsert append: refused.
    db.exec("CREATE TABLE nokey (id int, name text)").await;
    let mut cfg = db.sink("nokey", WriteMode::Upsert);
    cfg.key = vec!["id".into()];
    let refused = MysqlSink::new(cfg)
        .unwrap()
        .open(&StreamInfo::new("s".into(), first.data.schema(), "test"))
        .await
        .err()
        .expect("upsert without a unique key is refused");
    assert!(
        refused.to_string().contains("needs a primary or unique key on (id)"),
        "{refused}"
    );

    db.exec("CREATE TABLE r (id int PRIMARY KEY, name text)").await;
    db.exec("INSERT INTO r SELECT seq, 'orig' FROM seq_1_to_10").await;
    let partial = id_name_batch(1..6, |_| Some("new".into()));
    let mut sink = open(db.sink("r", WriteMode::Replace), &partial).await;
    sink.write(&partial).await.unwrap();
    sink.finish(false).await.unwrap();
    assert_eq!(db.count("SELECT COUNT(*) FROM r WHERE name = 'orig'").await, 10);
    assert_eq!(db.count("SELECT COUNT(*) FROM r").await, 10);

    let full = id_name_batch(1..4, |_| Some("new".into()));
    let mut sink = open(db.sink("r", WriteMode::Replace), &full).await;
    sink.write(&full).await.unwrap();
    sink.flush().await.unwrap();
    sink.finish(true).await.unwrap();
    assert_eq!(db.count("SELECT COUNT(*) FROM r WHERE name = 'new'").await, 3);
    assert_eq!(db.count("SELECT COUNT(*) FROM r").await, 3);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_partitions_read_every_row_exactly_once() {
    let Some(mut db) = TestDb::create().await else { return };
    db.exec("CREATE TABLE big (id bigint PRIMARY KEY, v varchar(20))").await;
    db.exec("INSERT INTO big SELECT seq, CONCAT('v', seq) FROM seq_1_to_300000")
        .await;
    db.exec("ANALYZE TABLE big").await;
    let source = Arc::new(MysqlSource::new(db.source("big")).unwrap());
    let stream = source.discover().await.unwrap().remove(0);
    assert!(stream.partitions.len() > 1, "{:?}", stream.partitions);
    let events = read_all(&source, &stream).await;
    let mut seen = HashSet::new();
    let mut total = 0usize;
    for ev in &events {
        if let SourceEvent::Batch(b) = ev {
            let ids = b
                .data
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .unwrap();
            total += ids.len();
            seen.extend(ids.values().iter().copied());
            let pos = b.position.as_ref().unwrap();
            assert!(pos.partition.starts_with("big:"));
        }
    }
    assert_eq!(total, 300_000);
    assert_eq!(seen.len(), 300_000);
    assert_eq!((seen.iter().min(), seen.iter().max()), (Some(&1), Some(&300_000)));
    db.drop().await;
}

/// Reads the first partition with `limits.rows` and an optional resume position.
async fn read_partition(
    source: &MysqlSource,
    stream: &StreamSpec,
    rows: usize,
    resume: Option<sluice_core::Position>,
) -> Vec<Batch> {
    read_nth_partition(source, stream, 0, rows, resume).await
}

/// Reads partition `n` with `limits.rows` and an optional resume position.
async fn read_nth_partition(
    source: &MysqlSource,
    stream: &StreamSpec,
    n: usize,
    rows: usize,
    resume: Option<sluice_core::Position>,
) -> Vec<Batch> {
    let (tx, mut rx) = mpsc::channel(1024);
    let ctx = ReadContext {
        out: tx,
        cancel: CancellationToken::new(),
        limits: BatchLimits {
            rows,
            ..Default::default()
        },
        resume,
        parallelism: 1,
        payload: None,
    };
    source.read(stream, &stream.partitions[n], ctx).await.unwrap();
    let mut batches = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        if let SourceEvent::Batch(b) = ev {
            batches.push(b);
        }
    }
    batches
}

fn strings(batches: &[Batch], col: usize) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b
                .data
                .column(col)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone();
            (0..a.len()).map(move |i| a.value(i).to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_read_starts_after_the_cursor_and_queries_are_one_stream() {
    let Some(mut db) = TestDb::create().await else { return };
    // A composite text key in a case-insensitive collation: resuming must follow the index order.
    db.exec("CREATE TABLE k (a varchar(10), b int, v varchar(10), PRIMARY KEY (a, b)) COLLATE utf8mb4_general_ci")
        .await;
    db.exec("INSERT INTO k VALUES ('a', 1, 'r1'), ('B', 1, 'r2'), ('b', 2, 'r3'), ('c', 1, 'r4'), ('C''d', 1, 'r5')")
        .await;
    let source = MysqlSource::new(db.source("k")).unwrap();
    let stream = source.discover().await.unwrap().remove(0);
    let all = read_partition(&source, &stream, 2, None).await;
    assert_eq!(all.len(), 3);
    let everything = strings(&all, 2);
    let resumed = read_partition(&source, &stream, 2, all[0].position.clone()).await;
    assert_eq!(strings(&resumed, 2), everything[2..].to_vec());
    assert_eq!(
        resumed.last().and_then(|b| b.position.as_ref()).map(|p| p.rows),
        Some(5)
    );

    let mut cfg = db.source("k");
    cfg.table = None;
    cfg.query = Some("SELECT v, b * 2 AS twice, CAST(1.50 AS DECIMAL(5,2)) AS d FROM k ORDER BY v".into());
    cfg.stream = Some("q".into());
    let source = MysqlSource::new(cfg).unwrap();
    let stream = source.discover().await.unwrap().remove(0);
    assert_eq!(&*stream.name, "q");
    assert_eq!(stream.schema.field(2).data_type(), &DataType::Decimal128(5, 2));
    let batches = read_partition(&source, &stream, 1000, None).await;
    assert_eq!(strings(&batches, 0), vec!["r1", "r2", "r3", "r4", "r5"]);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_column_key_is_read_in_ranges_of_its_leading_column_and_resumes_inside_one() {
    let Some(mut db) = TestDb::create().await else { return };
    // Shaped like employees.salaries: (emp_no, from_date) is the key.
    db.exec(
        "CREATE TABLE salaries (emp_no int NOT NULL, salary int NOT NULL, from_date date NOT NULL, \
             to_date date NOT NULL, PRIMARY KEY (emp_no, from_date))",
    )
    .await;
    db.exec(
        "INSERT INTO salaries SELECT 10000 + e.seq, 40000 + e.seq * 7 + y.seq, \
         DATE_ADD('1990-01-01', INTERVAL y.seq YEAR), DATE_ADD('1991-01-01', INTERVAL y.seq YEAR) \
         FROM seq_1_to_2000 e, seq_0_to_4 y",
    )
    .await;
    let mut cfg = db.source("salaries");
    cfg.partitions = Some(4);
    let source = Arc::new(MysqlSource::new(cfg).unwrap());
    let stream = source.discover().await.unwrap().remove(0);
    assert_eq!(stream.partitions.len(), 4, "{:?}", stream.partitions);

    let key = |b: &Batch, i: usize| {
        let emp = b
            .data
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int32Array>()
            .unwrap();
        let from = b
            .data
            .column(2)
            .as_any()
            .downcast_ref::<arrow::array::Date32Array>()
            .unwrap();
        (emp.value(i), from.value(i))
    };
    let mut seen = HashSet::new();
    let mut per_partition = Vec::new();
    for n in 0..4 {
        let batches = read_nth_partition(&source, &stream, n, 1000, None).await;
        let keys: Vec<(i32, i32)> = batches
            .iter()
            .flat_map(|b| (0..b.data.num_rows()).map(|i| key(b, i)).collect::<Vec<_>>())
            .collect();
        assert!(!keys.is_empty(), "partition {n} is empty");
        per_partition.push(keys.len());
        seen.extend(keys);
    }
    assert_eq!(seen.len(), 10_000, "every row once, in {per_partition:?}");
    assert_eq!(per_partition.iter().sum::<usize>(), 10_000);

    // Resume inside the second partition after a cut in the middle of one
    // employee's rows: the rest comes once, in key order.
    let whole = read_nth_partition(&source, &stream, 1, 333, None).await;
    let all: Vec<(i32, i32)> = whole
        .iter()
        .flat_map(|b| (0..b.data.num_rows()).map(|i| key(b, i)).collect::<Vec<_>>())
        .collect();
    let resumed = read_nth_partition(&source, &stream, 1, 333, whole[0].position.clone()).await;
    let rest: Vec<(i32, i32)> = resumed
        .iter()
        .flat_map(|b| (0..b.data.num_rows()).map(|i| key(b, i)).collect::<Vec<_>>())
        .collect();
    assert_eq!(rest, all[333..].to_vec());
    db.drop().await;
}
