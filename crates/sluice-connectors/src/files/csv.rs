//! CSV: schema inference from a sample, decoding framed records with
//! arrow-csv, and error messages that name the column.

use std::sync::{Arc, LazyLock};

use arrow::csv::reader::Format;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use regex::Regex;

use super::config::CsvOptions;
use super::decode::{Inference, RecordDecoder};

/// Decodes CSV records (no header) against a fixed schema.
pub(crate) struct CsvDecoder {
    schema: SchemaRef,
    opts: CsvOptions,
    null: Option<Regex>,
    inference: Inference,
}

impl CsvDecoder {
    pub fn new(schema: SchemaRef, opts: CsvOptions) -> Result<Self, String> {
        let null = null_regex(&opts)?;
        Ok(CsvDecoder {
            schema,
            opts,
            null,
            inference: Inference::default(),
        })
    }

    /// Says in errors how the column types were found.
    pub fn with_inference(mut self, inference: Inference) -> Self {
        self.inference = inference;
        self
    }

    fn builder(&self) -> arrow::csv::ReaderBuilder {
        let mut b = arrow::csv::ReaderBuilder::new(self.schema.clone())
            .with_header(false)
            .with_delimiter(self.opts.delimiter as u8)
            .with_quote(self.opts.quote as u8);
        if let Some(e) = self.opts.escape {
            b = b.with_escape(e as u8);
        }
        if let Some(c) = self.opts.comment {
            b = b.with_comment(c as u8);
        }
        if let Some(r) = &self.null {
            b = b.with_null_regex(r.clone());
        }
        b
    }

    /// Rewrites arrow-csv's message so it names the column and drops the
    /// chunk-relative line number (the caller knows the real one).
    fn explain(&self, message: &str) -> String {
        static LINE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r" (for|at) line \d+").expect("static regex"));
        static ROW_DATA: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\.? ?Row data: .*$").expect("static regex"));
        static COLUMN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"for column (\d+)").expect("static regex"));
        let m = message
            .trim_start_matches("Csv error: ")
            .trim_start_matches("Parser error: ");
        let m = LINE.replace_all(m, "");
        let m = ROW_DATA.replace(&m, "");
        let mut hint = String::new();
        let m = COLUMN
            .replace(&m, |c: &regex::Captures| {
                let name = c[1]
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| self.schema.fields().get(i))
                    .map(|f| f.name().clone());
                match name {
                    Some(n) => {
                        if self.inference.rows > 0 {
                            hint = self.inference.hint(&n);
                        }
                        format!("for column `{n}`")
                    }
                    None => c[0].to_string(),
                }
            })
            .into_owned();
        if m.contains("UTF-8") || m.contains("utf-8") || m.contains("utf8") {
            hint = format!("; {}", super::encoding::HINT);
        }
        format!("{m}{hint}")
    }
}

impl RecordDecoder for CsvDecoder {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn decode(&self, bytes: &[u8], records: usize) -> Result<RecordBatch, String> {
        let mut d = self.builder().with_batch_size(records + 1).build_decoder();
        let mut off = 0;
        while off < bytes.len() {
            let n = d.decode(&bytes[off..]).map_err(|e| self.explain(&e.to_string()))?;
            if n == 0 {
                break;
            }
            off += n;
        }
        d.decode(&[]).map_err(|e| self.explain(&e.to_string()))?;
        let batch = match d.flush().map_err(|e| self.explain(&e.to_string()))? {
            Some(b) => b,
            None => RecordBatch::new_empty(self.schema.clone()),
        };
        // `inf` is a float; `1e400` is a number too large for one.
        if super::decode::has_infinity(&batch) {
            static HUGE: LazyLock<Regex> =
                LazyLock::new(|| Regex::new(r"[0-9][0-9.]*[eE][+-]?[0-9]{3,}|[0-9]{309,}").expect("static regex"));
            let text = String::from_utf8_lossy(bytes);
            if let Some(m) = HUGE
                .find_iter(&text)
                .find(|m| m.as_str().parse::<f64>().is_ok_and(f64::is_infinite))
            {
                return Err(format!(
                    "number {} is too large for a 64-bit float and would become infinity; declare the column \
                     as text or decimal under [source.schema] to keep it exact",
                    m.as_str()
                ));
            }
        }
        Ok(batch)
    }
}

fn null_regex(opts: &CsvOptions) -> Result<Option<Regex>, String> {
    match &opts.null {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => Regex::new(&format!("^(?:{})$", regex::escape(s)))
            .map(Some)
            .map_err(|e| e.to_string()),
    }
}

/// Infers a schema from a sample of the input (header included when
/// `opts.header`), reading at most `max_records` records.
pub(crate) fn infer(sample: &[u8], opts: &CsvOptions, max_records: usize) -> Result<Schema, String> {
    // Ragged rows must not stop inference; decoding rejects them one by one.
    let mut format = Format::default()
        .with_header(opts.header)
        .with_delimiter(opts.delimiter as u8)
        .with_quote(opts.quote as u8)
        .with_truncated_rows(true);
    if let Some(e) = opts.escape {
        format = format.with_escape(e as u8);
    }
    if let Some(c) = opts.comment {
        format = format.with_comment(c as u8);
    }
    if let Some(r) = null_regex(opts)? {
        format = format.with_null_regex(r);
    }
    // The sample may end inside a record; inference reads whole lines only.
    let cut = sample
        .iter()
        .rposition(|&b| b == b'\n' || b == b'\r')
        .map_or(sample.len(), |i| i + 1);
    let sample = &sample[..cut];
    // Lines that are not UTF-8 are left to the decoder, which rejects them
    // one by one (so `on_error` decides); the header must be text.
    let valid;
    let sample = match std::str::from_utf8(sample) {
        Ok(_) => sample,
        Err(_) => {
            valid = utf8_lines(sample, opts.header)?;
            &valid[..]
        }
    };
    let (schema, _) = format
        .infer_schema(sample, Some(max_records))
        .map_err(|e| e.to_string())?;
    Ok(dedupe_names(schema))
}

/// The lines of `sample` that are valid UTF-8 (an invalid header is an error).
fn utf8_lines(sample: &[u8], header: bool) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(sample.len());
    for (i, line) in sample.split_inclusive(|&b| b == b'\n').enumerate() {
        match std::str::from_utf8(line) {
            Ok(_) => out.extend_from_slice(line),
            Err(e) if i == 0 && header => {
                return Err(format!(
                    "the header is not valid UTF-8 (byte {}); {}",
                    e.valid_up_to(),
                    super::encoding::HINT
                ));
            }
            Err(_) => {}
        }
    }
    Ok(out)
}

/// Makes column names unique and non-empty so SQL can address every column.
fn dedupe_names(schema: Schema) -> Schema {
    let mut seen = std::collections::HashSet::new();
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let base = if f.name().trim().is_empty() {
                format!("column_{}", i + 1)
            } else {
                f.name().trim().to_string()
            };
            let mut name = base.clone();
            let mut n = 2;
            while !seen.insert(name.clone()) {
                name = format!("{base}_{n}");
                n += 1;
            }
            Field::new(name, widen(f.data_type()), true)
        })
        .collect();
    Schema::new(fields)
}

/// Timestamps are inferred at the precision of the sample's fractional
/// digits; a later value with more digits would then fail to parse. Seconds
/// and milliseconds are widened to microseconds (what databases store).
/// A column empty in every sampled record becomes text, so that values
/// after the sample are kept rather than read into a type that holds none.
fn widen(t: &DataType) -> DataType {
    match t {
        DataType::Null => DataType::Utf8,
        DataType::Timestamp(TimeUnit::Second | TimeUnit::Millisecond, tz) => {
            DataType::Timestamp(TimeUnit::Microsecond, tz.clone())
        }
        other => other.clone(),
    }
}

/// The header names of a CSV sample, as [`infer`] would name them.
pub(crate) fn header_of(sample: &[u8], opts: &CsvOptions) -> Result<Vec<String>, String> {
    let line_end = sample.iter().position(|&b| b == b'\n').map_or(sample.len(), |i| i + 1);
    let schema = infer(
        &sample[..line_end],
        &CsvOptions {
            header: true,
            ..opts.clone()
        },
        0,
    )?;
    Ok(schema.fields().iter().map(|f| f.name().clone()).collect())
}

/// Shared handle used by the source.
pub(crate) fn decoder(
    schema: SchemaRef,
    opts: &CsvOptions,
    inference: Inference,
) -> Result<Arc<dyn RecordDecoder>, String> {
    Ok(Arc::new(
        CsvDecoder::new(schema, opts.clone())?.with_inference(inference),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> CsvOptions {
        CsvOptions::default()
    }

    #[test]
    fn infers_types_and_fixes_blank_and_duplicate_names() {
        let s = infer(b"id,,id,when\n1,x,2.5,2024-01-02\n2,y,3,2024-01-03\n", &opts(), 100).unwrap();
        let names: Vec<_> = s.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["id", "column_2", "id_2", "when"]);
        assert_eq!(s.field(0).data_type(), &DataType::Int64);
        assert_eq!(s.field(2).data_type(), &DataType::Float64);
        assert_eq!(s.field(3).data_type(), &DataType::Date32);
    }

    #[test]
    fn second_precision_timestamps_are_widened_so_later_fractions_parse() {
        let schema = Arc::new(infer(b"at\n2024-01-02T03:04:05\n", &opts(), 10).unwrap());
        assert_eq!(
            schema.field(0).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, None)
        );
        let d = CsvDecoder::new(schema, opts()).unwrap();
        assert_eq!(d.decode(b"2024-01-02T03:04:05.123456\n", 1).unwrap().num_rows(), 1);
    }

    #[test]
    fn a_number_too_large_for_a_float_is_refused_but_inf_is_a_float() {
        let schema = Arc::new(infer(b"x\n1.5\n", &opts(), 10).unwrap());
        let d = CsvDecoder::new(schema, opts()).unwrap();
        assert_eq!(d.decode(b"inf\n-inf\n2.5\n", 3).unwrap().num_rows(), 3);
        let err = d.decode(b"1e400\n", 1).unwrap_err();
        assert!(err.contains("1e400") && err.contains("too large"), "{err}");
    }

    #[test]
    fn decode_error_names_the_column() {
        let schema = Arc::new(infer(b"id,amount\n1,2\n", &opts(), 10).unwrap());
        let d = CsvDecoder::new(schema, opts()).unwrap();
        let err = d.decode(b"1,abc\n", 1).unwrap_err();
        assert!(err.contains("`amount`"), "{err}");
        assert!(!err.contains("line"), "{err}");
        assert_eq!(d.decode(b"1,2\n3,4\n", 2).unwrap().num_rows(), 2);
    }
}
