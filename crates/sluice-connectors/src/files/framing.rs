//! Splitting a byte stream into chunks of whole records, with the line each
//! record starts on.
//!
//! Framing does no decoding: it only finds where records begin, so chunks
//! can be decoded on several threads and a bad record can be cut out and
//! reported by line. CSV records end at a newline outside quotes; NDJSON
//! records end at every newline; the elements of a JSON array are separated
//! by top-level commas, which framing blanks out so that the decoder sees
//! whitespace-separated values. Blank records are not counted.

use memchr::{memchr, memchr2_iter, memchr3_iter};

/// Line breaks in `bytes` (`\n`, or a lone `\r` where there is no `\n`),
/// counting up to `enough`.
pub(crate) fn line_breaks(bytes: &[u8], enough: usize) -> usize {
    match memchr::memchr_iter(b'\n', bytes).take(enough).count() {
        0 => memchr::memchr_iter(b'\r', bytes).take(enough).count(),
        n => n,
    }
}

/// How records are delimited.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FrameKind {
    /// CSV: newline outside quotes; `escape` marks a quote that does not close.
    Csv {
        delimiter: u8,
        quote: u8,
        escape: Option<u8>,
    },
    /// One record per line (NDJSON).
    Lines,
    /// Elements of one top-level JSON array.
    JsonArray,
    /// `_bulk` NDJSON: an action line and, unless it deletes, the document
    /// line after it make one record.
    BulkPairs,
}

/// Whole records cut from the input.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    /// Bytes of the records (possibly preceded by skipped bytes such as a header).
    pub data: Vec<u8>,
    /// Offset in `data` where each record starts.
    pub starts: Vec<usize>,
    /// Line (1-based) on which each record starts.
    pub lines: Vec<u64>,
    /// Offset of `data[0]` in the (decompressed) input.
    pub base: u64,
    /// The last record opens a quote that the input never closes: it is
    /// not a record but the rest of the input, and must be refused.
    pub unterminated: bool,
    /// CSV records: their text is kept to the last byte in [`Chunk::raw`]
    /// (trailing spaces and commas are empty or padded fields).
    pub csv: bool,
}

impl Chunk {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Byte range of records `a..b`.
    pub fn span(&self, a: usize, b: usize) -> std::ops::Range<usize> {
        let end = if b < self.starts.len() {
            self.starts[b]
        } else {
            self.data.len()
        };
        self.starts[a]..end
    }

    /// The text of record `i` without its line ending, for dead-letter
    /// output (JSON elements also without the blanked separator after them).
    pub fn raw(&self, i: usize) -> String {
        let r = self.span(i, i + 1);
        let text = String::from_utf8_lossy(&self.data[r]);
        if self.csv {
            // Its line ending, and any empty lines after it, go.
            text.trim_end_matches(['\n', '\r']).to_string()
        } else {
            // JSON: trailing whitespace (blank lines after it) means nothing.
            text.trim_end_matches(|c: char| c.is_ascii_whitespace() || c == ',')
                .to_string()
        }
    }
}

/// Incremental framer: feed bytes, take chunks of whole records.
pub(crate) struct Framer {
    kind: FrameKind,
    buf: Vec<u8>,
    /// How far `buf` has been scanned.
    scanned: usize,
    /// Starts of records in `buf`; the last one may still be incomplete.
    starts: Vec<usize>,
    lines: Vec<u64>,
    /// Line number at `buf[scanned]`.
    line: u64,
    /// Offset of `buf[0]` in the input.
    base: u64,
    /// Records still to skip (a CSV header).
    skip: usize,
    in_quotes: bool,
    /// CSV: where the last quoted field closed (a quote right after it is a
    /// doubled quote), and the byte an escape character made literal.
    csv_closed_at: Option<usize>,
    csv_literal_at: Option<usize>,
    /// JSON state: nesting depth, and whether the input is one outer array.
    depth: u32,
    outer_array: Option<bool>,
    escaped: bool,
    /// Whether the current (last) record has any non-blank byte yet.
    open_nonblank: bool,
    /// Bulk: the action line of the current record is in, its document is not.
    awaiting_source: bool,
    /// The byte that ends a line: `\n` (also for `\r\n`), or `\r` for
    /// input whose lines end in a lone carriage return (old Mac and Excel
    /// exports). Decided on the first line ending seen.
    nl: Option<u8>,
}

impl Framer {
    /// A framer that skips the first `skip` records (1 for a CSV header).
    pub fn new(kind: FrameKind, skip: usize) -> Self {
        Framer {
            kind,
            buf: Vec::new(),
            scanned: 0,
            starts: Vec::new(),
            lines: Vec::new(),
            line: 1,
            base: 0,
            skip,
            in_quotes: false,
            csv_closed_at: None,
            csv_literal_at: None,
            depth: 0,
            outer_array: None,
            escaped: false,
            open_nonblank: false,
            awaiting_source: false,
            nl: None,
        }
    }

    /// Whether a read can start in the middle of the input (records are
    /// self-delimiting lines; a JSON array's elements are not).
    pub fn resumable(&self) -> bool {
        !matches!(self.kind, FrameKind::JsonArray)
    }

    /// Continues input that starts at byte `offset` of the whole, on `line`,
    /// at the start of a record (a resumed read): headers are behind it.
    pub fn resume_at(&mut self, offset: u64, line: u64) {
        self.base = offset;
        self.line = line;
        self.skip = 0;
        self.begin_record(0);
    }

    /// Bytes buffered and not yet handed out.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Appends input bytes and scans them.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.buf.is_empty() && self.starts.is_empty() && self.base == 0 && self.line == 1 {
            self.begin_record(0);
        }
        self.buf.extend_from_slice(bytes);
        if self.nl.is_none() && !self.detect_line_ending() {
            // Nothing tells yet (no line ending, or a `\r` as the last byte).
            return;
        }
        self.scan();
    }

    /// Scans the bytes pushed since the last scan.
    fn scan(&mut self) {
        match self.kind {
            FrameKind::Csv {
                delimiter,
                quote,
                escape,
            } => self.scan_csv(delimiter, quote, escape),
            FrameKind::Lines => self.scan_lines(),
            FrameKind::BulkPairs => self.scan_bulk(),
            FrameKind::JsonArray => self.scan_json_array(),
        }
    }

    fn begin_record(&mut self, at: usize) {
        // A record that turned out blank is replaced by the next one.
        if !self.open_nonblank && self.starts.pop().is_some() {
            self.lines.pop();
        }
        self.starts.push(at);
        self.lines.push(self.line);
        self.open_nonblank = false;
    }

    fn end_record(&mut self, next: usize) {
        if self.open_nonblank && self.skip > 0 {
            // A skipped record (a header) leaves no start; its bytes stay as they are.
            self.skip -= 1;
            self.starts.pop();
            self.lines.pop();
        }
        self.begin_record(next);
    }

    /// A JSON element starts at its first byte, not at the separator before it.
    fn note_first(&mut self, at: usize) {
        if !self.open_nonblank {
            if let (Some(s), Some(l)) = (self.starts.last_mut(), self.lines.last_mut()) {
                *s = at;
                *l = self.line;
            }
            self.open_nonblank = true;
        }
    }

    fn mark_nonblank(&mut self, from: usize, to: usize) {
        if self.open_nonblank {
            return;
        }
        // A CSV line is blank only when empty: spaces are a value, and a
        // line of tabs in a TSV file is a record of empty fields.
        let blank = |b: &u8| match self.kind {
            FrameKind::Csv { .. } => matches!(b, b'\n' | b'\r'),
            _ => b.is_ascii_whitespace(),
        };
        if !self.buf[from..to].iter().all(blank) {
            self.open_nonblank = true;
        }
    }

    /// Decides the line ending from the first one in the input: a `\r`
    /// followed by anything but `\n` makes `\r` the line ending. Returns
    /// whether it is decided.
    fn detect_line_ending(&mut self) -> bool {
        if !matches!(self.kind, FrameKind::Csv { .. } | FrameKind::Lines) {
            self.nl = Some(b'\n');
            return true;
        }
        match memchr::memchr2(b'\n', b'\r', &self.buf) {
            Some(i) if self.buf[i] == b'\r' => match self.buf.get(i + 1) {
                Some(b'\n') => self.nl = Some(b'\n'),
                Some(_) => self.nl = Some(b'\r'),
                None => return false,
            },
            Some(_) => self.nl = Some(b'\n'),
            None => return false,
        }
        true
    }

    /// Bytes of the record still being read (for a limit on runaway quotes).
    pub fn open_record_bytes(&self) -> usize {
        self.buf.len() - self.starts.last().copied().unwrap_or(0)
    }

    /// Line on which the record still being read starts.
    pub fn open_record_line(&self) -> u64 {
        self.lines.last().copied().unwrap_or(self.line)
    }

    /// Whether the record being read is inside a quoted field.
    pub fn in_quotes(&self) -> bool {
        self.in_quotes
    }

    /// CSV follows the reader's rules: a quote opens a quoted field only at
    /// the start of a field (a quote inside an unquoted field is text), a
    /// doubled quote inside quotes is one quote, and inside quotes the
    /// escape character takes the byte after it literally.
    fn scan_csv(&mut self, delimiter: u8, quote: u8, escape: Option<u8>) {
        let start = self.scanned;
        let mut seg = start;
        let escape = escape.filter(|&e| e != quote);
        let nl = self.nl.unwrap_or(b'\n');
        let hits: Vec<usize> = match escape {
            Some(e) => memchr3_iter(quote, nl, e, &self.buf[start..])
                .map(|i| i + start)
                .collect(),
            None => memchr2_iter(quote, nl, &self.buf[start..]).map(|i| i + start).collect(),
        };
        for i in hits {
            let b = self.buf[i];
            if self.csv_literal_at == Some(i) {
                // The byte after an escape character.
                self.csv_literal_at = None;
                self.open_nonblank = true;
                if b == nl {
                    self.line += 1;
                }
                continue;
            }
            if Some(b) == escape {
                if self.in_quotes {
                    self.csv_literal_at = Some(i + 1);
                }
                self.open_nonblank = true;
            } else if b == quote {
                if self.in_quotes {
                    self.in_quotes = false;
                    self.csv_closed_at = Some(i);
                } else {
                    let field_start =
                        i == 0 || matches!(self.buf[i - 1], b'\n' | b'\r') || self.buf[i - 1] == delimiter;
                    let doubled = i > 0 && self.csv_closed_at == Some(i - 1);
                    if field_start || doubled {
                        self.in_quotes = true;
                    }
                }
                self.open_nonblank = true;
            } else {
                self.mark_nonblank(seg, i);
                self.line += 1;
                if !self.in_quotes {
                    self.end_record(i + 1);
                }
                seg = i + 1;
            }
        }
        let len = self.buf.len();
        self.mark_nonblank(seg, len);
        self.scanned = len;
    }

    fn scan_lines(&mut self) {
        let mut pos = self.scanned;
        let nl = self.nl.unwrap_or(b'\n');
        while let Some(off) = memchr(nl, &self.buf[pos..]) {
            let nl = pos + off;
            self.mark_nonblank(pos, nl);
            self.line += 1;
            self.end_record(nl + 1);
            pos = nl + 1;
        }
        let len = self.buf.len();
        self.mark_nonblank(pos, len);
        self.scanned = len;
    }

    fn scan_bulk(&mut self) {
        let mut pos = self.scanned;
        // The line being scanned may have begun in an earlier push: judge it whole.
        let mut line_start = memchr::memrchr(b'\n', &self.buf[..pos]).map_or(0, |i| i + 1);
        while let Some(off) = memchr(b'\n', &self.buf[pos..]) {
            let nl = pos + off;
            let blank = self.buf[line_start..nl].iter().all(u8::is_ascii_whitespace);
            self.mark_nonblank(pos, nl);
            self.line += 1;
            if !blank {
                if self.awaiting_source {
                    self.awaiting_source = false;
                    self.end_record(nl + 1);
                } else if super::docs::bulk_action_wants_source(&self.buf[line_start..nl]) {
                    self.awaiting_source = true;
                } else {
                    self.end_record(nl + 1);
                }
            }
            pos = nl + 1;
            line_start = pos;
        }
        let len = self.buf.len();
        self.mark_nonblank(pos, len);
        self.scanned = len;
    }

    fn scan_json_array(&mut self) {
        for i in self.scanned..self.buf.len() {
            let b = self.buf[i];
            if b == b'\n' {
                self.line += 1;
            }
            if self.in_quotes {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_quotes = false;
                }
                continue;
            }
            match b {
                b'"' => {
                    self.in_quotes = true;
                    self.note_first(i);
                }
                // The outer array's brackets and commas belong to no element.
                b'[' if self.depth == 0 && self.outer_array != Some(false) => {
                    self.outer_array = Some(true);
                    self.buf[i] = b' ';
                    self.depth = 1;
                    self.begin_record(i + 1);
                }
                b'[' | b'{' => {
                    if self.depth == 0 {
                        self.outer_array = Some(false);
                    }
                    self.depth += 1;
                    self.note_first(i);
                }
                b']' | b'}' => {
                    self.depth = self.depth.saturating_sub(1);
                    match (self.outer_array, self.depth) {
                        (Some(true), 0) => {
                            self.buf[i] = b' ';
                            self.end_record(i + 1);
                        }
                        // Top-level objects one after another: each is a record.
                        (Some(false), 0) => {
                            self.open_nonblank = true;
                            self.end_record(i + 1);
                        }
                        _ => self.open_nonblank = true,
                    }
                }
                b',' if self.depth == 1 && self.outer_array == Some(true) => {
                    self.buf[i] = b' ';
                    self.end_record(i + 1);
                }
                c if !c.is_ascii_whitespace() => self.note_first(i),
                _ => {}
            }
        }
        self.scanned = self.buf.len();
    }

    /// Takes the complete records buffered so far, if there are any.
    pub fn take(&mut self) -> Option<Chunk> {
        // The last start is the record still being read.
        if self.starts.len() < 2 {
            return None;
        }
        let cut = *self.starts.last()?;
        let rest = self.buf.split_off(cut);
        let data = std::mem::replace(&mut self.buf, rest);
        let open_line = self.lines.pop()?;
        self.starts.pop();
        let starts = std::mem::take(&mut self.starts);
        let lines = std::mem::take(&mut self.lines);
        let chunk = Chunk {
            data,
            starts,
            lines,
            base: self.base,
            unterminated: false,
            csv: matches!(self.kind, FrameKind::Csv { .. }),
        };
        self.base += cut as u64;
        self.scanned -= cut;
        self.csv_closed_at = self.csv_closed_at.and_then(|p| p.checked_sub(cut));
        self.csv_literal_at = self.csv_literal_at.and_then(|p| p.checked_sub(cut));
        self.starts.push(0);
        self.lines.push(open_line);
        Some(chunk)
    }

    /// End of input: the last record may lack its terminator.
    pub fn finish(&mut self) -> Option<Chunk> {
        if self.nl.is_none() {
            // Input without a line break (or ending in its first `\r`).
            self.nl = Some(if self.buf.ends_with(b"\r") { b'\r' } else { b'\n' });
            self.scan();
        }
        let unterminated = self.in_quotes && matches!(self.kind, FrameKind::Csv { .. }) && self.open_nonblank;
        if self.open_nonblank && self.skip == 0 {
            if !matches!(self.kind, FrameKind::JsonArray) {
                self.buf.push(b'\n');
            }
            let len = self.buf.len();
            self.scanned = len;
            self.open_nonblank = true;
            self.starts.push(len);
            self.lines.push(self.line);
        }
        let mut chunk = self.take();
        if let Some(c) = chunk.as_mut() {
            c.unterminated = unterminated;
        }
        self.buf.clear();
        self.starts.clear();
        self.lines.clear();
        chunk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: FrameKind, skip: usize, input: &[u8], step: usize) -> Vec<(u64, String)> {
        let mut f = Framer::new(kind, skip);
        let mut out = Vec::new();
        let mut collect = |c: Chunk| {
            for i in 0..c.len() {
                out.push((c.lines[i], c.raw(i)));
            }
        };
        for piece in input.chunks(step) {
            f.push(piece);
            if let Some(c) = f.take() {
                collect(c);
            }
        }
        if let Some(c) = f.finish() {
            collect(c);
        }
        out
    }

    #[test]
    fn csv_records_keep_quoted_newlines_and_report_start_lines() {
        let input = b"a,b\n1,\"x\ny\"\n\n2,z\n3,\"q\"\"\"";
        for step in [1, 3, 100] {
            let recs = frame(
                FrameKind::Csv {
                    delimiter: b',',
                    quote: b'"',
                    escape: None,
                },
                1,
                input,
                step,
            );
            assert_eq!(
                recs,
                vec![
                    (2, "1,\"x\ny\"".to_string()),
                    (5, "2,z".to_string()),
                    (6, "3,\"q\"\"\"".to_string())
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn csv_stray_quotes_and_escapes_do_not_join_records() {
        // A quote inside an unquoted field is text; `\\` escapes the backslash
        // before a closing quote; an escaped quote does not close the field.
        let input = b"a,b\n1,5\"7 board\n2,ok\n3,\"x\\\\\"\n4,\"say \\\"hi\\\"\nthere\"\n5,\"\"\"q\"\"\"\n";
        for step in [1, 2, 5, 100] {
            let recs = frame(
                FrameKind::Csv {
                    delimiter: b',',
                    quote: b'"',
                    escape: Some(b'\\'),
                },
                1,
                input,
                step,
            );
            let lines: Vec<u64> = recs.iter().map(|r| r.0).collect();
            assert_eq!(lines, vec![2, 3, 4, 5, 7], "step {step}: {recs:?}");
            assert_eq!(recs[0].1, "1,5\"7 board");
            assert_eq!(recs[3].1, "4,\"say \\\"hi\\\"\nthere\"");
        }
    }

    #[test]
    fn json_array_elements_become_records() {
        let input = b"[\n {\"a\": [1,2], \"s\": \"x,]\"},\n {\"a\": []}\n]\n";
        for step in [1, 7, 100] {
            let recs = frame(FrameKind::JsonArray, 0, input, step);
            assert_eq!(recs.len(), 2, "step {step}: {recs:?}");
            assert_eq!(recs[0], (2, "{\"a\": [1,2], \"s\": \"x,]\"}".to_string()));
            assert_eq!(recs[1].0, 3);
        }
    }

    #[test]
    fn concatenated_top_level_objects_are_records() {
        let recs = frame(FrameKind::JsonArray, 0, b"{\"a\": {\"b\": 1}, \"c\": 2}\n{\"a\": 3}", 5);
        assert_eq!(
            recs,
            vec![
                (1, "{\"a\": {\"b\": 1}, \"c\": 2}".to_string()),
                (2, "{\"a\": 3}".to_string())
            ]
        );
    }

    #[test]
    fn ndjson_skips_blank_lines() {
        let recs = frame(FrameKind::Lines, 0, b"{\"a\":1}\n\n  \n{\"a\":2}", 4);
        assert_eq!(recs, vec![(1, "{\"a\":1}".to_string()), (4, "{\"a\":2}".to_string())]);
    }
}

#[cfg(test)]
mod bulk_tests {
    use super::*;

    #[test]
    fn bulk_pairs_are_one_record() {
        let input = b"{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"x\":1}\n{\"delete\":{\"_id\":\"3\"}}\n";
        for step in [1, 5, 1000] {
            let mut f = Framer::new(FrameKind::BulkPairs, 0);
            let mut recs = Vec::new();
            for piece in input.chunks(step) {
                f.push(piece);
                if let Some(c) = f.take() {
                    for i in 0..c.len() {
                        recs.push((c.lines[i], c.raw(i)));
                    }
                }
            }
            if let Some(c) = f.finish() {
                for i in 0..c.len() {
                    recs.push((c.lines[i], c.raw(i)));
                }
            }
            assert_eq!(recs.len(), 2, "step {step}: {recs:?}");
        }
    }
}
