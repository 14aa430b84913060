//! Property tests for the text path: framing, inference and decoding.
//!
//! Records written by a reference CSV writer (the `csv` crate) with any line
//! ending, fed in pieces of any size, read back equal; and whatever the
//! values after the inference sample are, each one arrives intact or its
//! record is rejected with its line — none disappears.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use proptest::prelude::*;
use sluice_core::SourceEvent;

use super::config::CsvOptions;
use super::csv::{CsvDecoder, infer};
use super::decode::{Labels, RecordDecoder, decode_chunk};
use super::framing::{FrameKind, Framer};

fn labels() -> Labels {
    Labels {
        stream: "s".into(),
        origin: "in.csv".into(),
        partition: "in.csv".into(),
        by: "csv".into(),
    }
}

/// Frames `input` fed `step` bytes at a time, decodes every chunk, and
/// returns (line, row values as text or None) for rows and (line, reason)
/// for rejections.
type RowOut = (u64, Vec<Option<String>>);

fn read_back(input: &[u8], decoder: &dyn RecordDecoder, step: usize) -> (Vec<RowOut>, Vec<(u64, String)>) {
    let kind = FrameKind::Csv {
        delimiter: b',',
        quote: b'"',
        escape: None,
    };
    let mut framer = Framer::new(kind, 1);
    let mut chunks = Vec::new();
    for piece in input.chunks(step.max(1)) {
        framer.push(piece);
        chunks.extend(framer.take());
    }
    chunks.extend(framer.finish());
    let mut rows = Vec::new();
    let mut rejected = Vec::new();
    let mut before = 0;
    for chunk in &chunks {
        let decoded = decode_chunk(decoder, chunk, 7, before, &labels());
        before += chunk.len() as u64;
        for ev in decoded.events {
            match ev {
                SourceEvent::Batch(b) => {
                    let lines = b.lines.clone().expect("file batches carry lines");
                    for r in 0..b.num_rows() {
                        let values = (0..b.data.num_columns())
                            .map(|c| text_of(b.data.column(c).as_ref(), r))
                            .collect();
                        rows.push((lines.value(r), values));
                    }
                }
                SourceEvent::Reject(j) => rejected.push((j.line.unwrap_or(0), j.reason)),
                SourceEvent::Progress { .. } => {}
            }
        }
    }
    (rows, rejected)
}

fn text_of(a: &dyn Array, r: usize) -> Option<String> {
    if a.is_null(r) {
        return None;
    }
    Some(match a.data_type() {
        DataType::Utf8 => a.as_string::<i32>().value(r).to_string(),
        DataType::Int64 => a.as_primitive::<Int64Type>().value(r).to_string(),
        DataType::Float64 => a.as_primitive::<Float64Type>().value(r).to_string(),
        DataType::Boolean => a.as_boolean().value(r).to_string(),
        _ => arrow::util::display::array_value_to_string(a, r).unwrap_or_default(),
    })
}

/// Writes `records` under a header with the reference writer and `ending`.
fn reference_csv(columns: usize, records: &[Vec<String>], ending: &str) -> Vec<u8> {
    let terminator = match ending {
        "\r\n" => ::csv::Terminator::CRLF,
        e => ::csv::Terminator::Any(e.as_bytes()[0]),
    };
    let mut w = ::csv::WriterBuilder::new()
        .terminator(terminator)
        .quote_style(::csv::QuoteStyle::Necessary)
        .from_writer(Vec::new());
    let header: Vec<String> = (0..columns).map(|c| format!("c{c}")).collect();
    w.write_record(&header).expect("in memory");
    for r in records {
        w.write_record(r).expect("in memory");
    }
    w.into_inner().expect("in memory")
}

fn text_schema(columns: usize) -> Arc<Schema> {
    Arc::new(Schema::new(
        (0..columns)
            .map(|c| Field::new(format!("c{c}"), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ))
}

/// Field text: anything, with quotes, separators and every line ending
/// more likely than in random text.
fn field() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => "[a-zA-Z0-9 é€]",
            1 => Just("\"".to_string()),
            1 => Just(",".to_string()),
            1 => Just("\n".to_string()),
            1 => Just("\r".to_string()),
            1 => Just("\r\n".to_string()),
        ],
        0..6,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Any records, any line ending, any read size: read back equal (an
    /// empty field is NULL, as the decoder reads it).
    #[test]
    fn csv_written_by_a_reference_writer_reads_back_equal(
        columns in 2usize..5,
        raw in prop::collection::vec(prop::collection::vec(field(), 5), 0..25),
        ending in prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
        step in 1usize..64,
    ) {
        let records: Vec<Vec<String>> = raw.into_iter().map(|mut r| { r.truncate(columns); r }).collect();
        let input = reference_csv(columns, &records, ending);
        let decoder = CsvDecoder::new(text_schema(columns), CsvOptions::default()).expect("no null text");
        let (rows, rejected) = read_back(&input, &decoder, step);
        prop_assert!(rejected.is_empty(), "rejected: {rejected:?}\ninput: {:?}", String::from_utf8_lossy(&input));
        let got: Vec<Vec<Option<String>>> = rows.into_iter().map(|(_, v)| v).collect();
        let want: Vec<Vec<Option<String>>> = records
            .iter()
            .map(|r| r.iter().map(|f| (!f.is_empty()).then(|| f.clone())).collect())
            .collect();
        prop_assert_eq!(got, want, "input: {:?}", String::from_utf8_lossy(&input));
    }

    /// Values after the inference sample that the inferred type cannot
    /// hold are rejected with their line; every other value arrives equal.
    #[test]
    fn no_value_disappears_after_the_inference_sample(
        kinds in prop::collection::vec(0usize..5, 2..4),
        values in prop::collection::vec(prop::collection::vec(any_value(), 4), 1..40),
        sampled in 1usize..10,
        ending in prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
    ) {
        let columns = kinds.len();
        // The first rows follow each column's kind (or are empty); the rest are anything.
        let records: Vec<Vec<String>> = values
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (0..columns)
                    .map(|c| if i < sampled { typed(kinds[c], &r[c]) } else { r[c].clone() })
                    .collect()
            })
            .collect();
        let input = reference_csv(columns, &records, ending);
        let schema = Arc::new(infer(&input, &CsvOptions::default(), sampled).expect("infers"));
        let decoder = CsvDecoder::new(schema.clone(), CsvOptions::default()).expect("no null text");
        let (rows, rejected) = read_back(&input, &decoder, 13);
        prop_assert_eq!(rows.len() + rejected.len(), records.len());
        for (line, values) in rows {
            let i = usize::try_from(line).expect("small") - 2;
            let record = &records[i];
            for (c, got) in values.iter().enumerate() {
                let want = &record[c];
                match got {
                    None => prop_assert!(want.is_empty(), "line {line} column {c}: `{want}` became NULL"),
                    Some(got) => prop_assert!(
                        same_value(schema.field(c).data_type(), want, got),
                        "line {line} column {c}: `{want}` arrived as `{got}` ({})",
                        schema.field(c).data_type()
                    ),
                }
            }
        }
        for (line, reason) in rejected {
            prop_assert!(line >= 2, "rejection without its line: {reason}");
        }
    }
}

/// Values of every kind inference distinguishes, and ones that break them.
fn any_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        (-1000i64..1000).prop_map(|v| v.to_string()),
        Just("9223372036854775808".to_string()),
        Just("123456789012345678901234567890".to_string()),
        (-1000.0f64..1000.0).prop_map(|v| format!("{v:.3}")),
        Just("true".to_string()),
        Just("2024-01-02".to_string()),
        "[a-z]{1,6}",
    ]
}

/// A sampled value of one kind: 0 empty, 1 int, 2 float, 3 bool, 4 text.
fn typed(kind: usize, v: &str) -> String {
    let n = v.len() as i64;
    match kind {
        0 => String::new(),
        1 => (n * 7).to_string(),
        2 => format!("{}.5", n),
        3 => (n % 2 == 0).to_string(),
        _ => format!("w{n}"),
    }
}

fn same_value(t: &DataType, want: &str, got: &str) -> bool {
    match t {
        DataType::Int64 => want.parse::<i64>().is_ok_and(|w| w.to_string() == got),
        DataType::Float64 => want
            .parse::<f64>()
            .ok()
            .zip(got.parse::<f64>().ok())
            .is_some_and(|(w, g)| w == g),
        DataType::Boolean => want.eq_ignore_ascii_case(got),
        _ => want == got,
    }
}

#[test]
fn a_column_empty_in_the_sample_keeps_later_values() {
    let mut input = String::from("id,note\n");
    for i in 1..=2000 {
        input.push_str(&format!("{i},\n"));
    }
    input.push_str("2001,hello\n");
    let schema = Arc::new(infer(input.as_bytes(), &CsvOptions::default(), 1000).expect("infers"));
    assert_eq!(schema.field(1).data_type(), &DataType::Utf8);
    let decoder = CsvDecoder::new(schema, CsvOptions::default()).expect("no null text");
    let (rows, rejected) = read_back(input.as_bytes(), &decoder, 4096);
    assert!(rejected.is_empty());
    assert_eq!(rows.len(), 2001);
    assert_eq!(rows[2000], (2002, vec![Some("2001".into()), Some("hello".into())]));
}

#[test]
fn framing_errors_are_rejections_with_their_line_not_swallowed_rows() {
    let schema = text_schema(2);
    let decoder = CsvDecoder::new(schema, CsvOptions::default()).expect("no null text");
    // An unterminated quote on the record of line 4: lines 2 and 3 arrive,
    // the rest is one rejection naming line 4, nothing is a row holding it.
    let mut input = String::from("a,b\n1,x\n2,y\n3,\"never closed\n");
    for i in 4..100 {
        input.push_str(&format!("{i},z\n"));
    }
    let (rows, rejected) = read_back(input.as_bytes(), &decoder, 50);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].0, 4);
    assert!(rejected[0].1.contains("never closed"), "{}", rejected[0].1);

    // Old Mac / Excel line endings.
    let (rows, rejected) = read_back(b"a,b\r1,x\r2,y\r", &decoder, 3);
    assert!(rejected.is_empty());
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1], (3, vec![Some("2".into()), Some("y".into())]));

    // A line of spaces is its own (ragged) record: the row before it is intact.
    let (rows, rejected) = read_back(b"a,b\n1,x\n   \n2,y\n", &decoder, 100);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0], (2, vec![Some("1".into()), Some("x".into())]));
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].0, 3);
}
