//! Entry points for fuzzing the text path (`fuzz/` at the repository root,
//! run by `bench/fuzz.sh`) and for replaying what a fuzzer found
//! (`tests/data/fuzz/`, replayed by the unit test below).
//!
//! Each one frames and decodes arbitrary bytes, fed in pieces of a size the
//! input chooses, and checks what must hold for any input: nothing panics,
//! every record is either a row or a rejection with a line, lines never go
//! backwards, and the same bytes framed in one piece give the same records.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use sluice_core::SourceEvent;

use super::config::CsvOptions;
use super::csv::CsvDecoder;
use super::decode::{Labels, RecordDecoder, decode_chunk};
use super::framing::{FrameKind, Framer};
use super::json::JsonDecoder;

fn labels() -> Labels {
    Labels {
        stream: "fuzz".into(),
        origin: "fuzz".into(),
        partition: "fuzz".into(),
        by: "fuzz".into(),
    }
}

/// Records as (line, raw text) and how many rows and rejections they gave.
struct Outcome {
    records: Vec<(u64, String)>,
    rows: usize,
    rejected: usize,
}

fn run(kind: FrameKind, skip: usize, decoder: &dyn RecordDecoder, input: &[u8], step: usize) -> Outcome {
    let mut framer = Framer::new(kind, skip);
    let mut chunks = Vec::new();
    for piece in input.chunks(step.max(1)) {
        framer.push(piece);
        chunks.extend(framer.take());
    }
    chunks.extend(framer.finish());
    let mut out = Outcome {
        records: Vec::new(),
        rows: 0,
        rejected: 0,
    };
    let mut before = 0;
    for chunk in &chunks {
        for i in 0..chunk.len() {
            out.records.push((chunk.lines[i], chunk.raw(i)));
        }
        for ev in decode_chunk(decoder, chunk, 5, before, &labels()).events {
            match ev {
                SourceEvent::Batch(b) => out.rows += b.num_rows(),
                SourceEvent::Reject(r) => {
                    assert!(r.line.is_some(), "a rejection without its line: {}", r.reason);
                    out.rejected += 1;
                }
                SourceEvent::Progress { .. } => {}
            }
        }
        before += chunk.len() as u64;
    }
    out
}

fn check(kind: FrameKind, skip: usize, decoder: &dyn RecordDecoder, data: &[u8]) {
    let (step, input) = match data.split_first() {
        Some((s, rest)) => (usize::from(*s % 32) + 1, rest),
        None => (1, data),
    };
    let pieces = run(kind, skip, decoder, input, step);
    let whole = run(kind, skip, decoder, input, input.len().max(1));
    assert_eq!(
        pieces.records, whole.records,
        "framing depends on how the input was cut"
    );
    assert!(
        pieces.records.windows(2).all(|w| w[0].0 <= w[1].0),
        "lines go backwards: {:?}",
        pieces.records
    );
    // A record decodes to one row or is rejected; a comment line (none
    // here) would be the only record that is neither.
    assert!(
        pieces.rows + pieces.rejected >= pieces.records.len(),
        "{} records gave {} rows and {} rejections",
        pieces.records.len(),
        pieces.rows,
        pieces.rejected
    );
}

/// Two text columns behind a header, CSV with quotes doubled.
pub fn csv(data: &[u8]) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Utf8, true),
        Field::new("b", DataType::Int64, true),
    ]));
    let Ok(decoder) = CsvDecoder::new(schema, CsvOptions::default()) else {
        return;
    };
    let kind = FrameKind::Csv {
        delimiter: b',',
        quote: b'"',
        escape: None,
    };
    check(kind, 1, &decoder, data);
}

/// NDJSON objects with a number, a string and a nested object.
pub fn ndjson(data: &[u8]) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("n", DataType::Float64, true),
        Field::new("s", DataType::Utf8, true),
    ]));
    let decoder = JsonDecoder::new(schema);
    check(FrameKind::Lines, 0, &decoder, data);
}

#[cfg(test)]
mod tests {
    /// Every input a fuzzer found is kept under `tests/data/fuzz/TARGET/`
    /// and replayed here.
    #[test]
    fn inputs_found_by_fuzzing_still_pass() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz");
        let mut replayed = 0;
        for (target, run) in [("csv", super::csv as fn(&[u8])), ("ndjson", super::ndjson)] {
            let Ok(entries) = std::fs::read_dir(root.join(target)) else {
                continue;
            };
            for e in entries.flatten() {
                let data = std::fs::read(e.path()).expect("fuzz case");
                run(&data);
                replayed += 1;
            }
        }
        assert!(replayed > 0, "no fuzz cases under {}", root.display());
    }
}
