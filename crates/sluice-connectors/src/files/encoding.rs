//! Text encodings of input files: a reader that hands UTF-8 to the framers.
//!
//! A byte-order mark decides first (UTF-8, UTF-16LE, UTF-16BE); otherwise
//! the configured encoding (`encoding = "windows-1252"`), otherwise UTF-8.
//! UTF-8 input passes through untouched (only a BOM is dropped), so it costs
//! nothing; other encodings are transcoded a block at a time. Bytes the
//! encoding cannot decode are an error naming their offset, never replaced.

use std::io::{self, Read};

use encoding_rs::{Decoder, Encoding, UTF_8};

/// Resolves a WHATWG label (`latin1`, `windows-1252`, `utf-16le`, …).
pub(crate) fn lookup(label: &str) -> Result<&'static Encoding, String> {
    Encoding::for_label(label.trim().as_bytes()).ok_or_else(|| {
        format!(
            "unknown encoding `{label}`; use a WHATWG label such as utf-8, windows-1252, latin1, iso-8859-15, \
             shift_jis, euc-kr, gb18030 or utf-16le"
        )
    })
}

/// What to add to a UTF-8 error: how to read a file in another encoding.
pub(crate) const HINT: &str = "if the input is in another encoding, set encoding (for example \
     encoding = \"windows-1252\" under [source], or --encoding windows-1252)";

/// An error reading input: text the encoding cannot decode is bad data
/// (exit 4), anything else an I/O error.
pub(crate) fn read_error(origin: &str, e: io::Error) -> sluice_core::Error {
    if e.kind() == io::ErrorKind::InvalidData {
        sluice_core::Error::data(origin, e.to_string())
    } else {
        sluice_core::Error::io(origin, e)
    }
}

/// Reads `inner` as UTF-8, whatever its encoding.
pub(crate) struct Utf8Reader<R> {
    inner: R,
    configured: &'static Encoding,
    /// First bytes, kept until the byte-order mark is known.
    head: Vec<u8>,
    state: State,
    /// Undecoded input and how much of it was used.
    src: Vec<u8>,
    src_pos: usize,
    /// Decoded output not yet handed out.
    out: Vec<u8>,
    out_pos: usize,
    /// Input bytes consumed by the decoder, for error offsets.
    offset: u64,
    eof: bool,
}

enum State {
    Sniffing,
    /// UTF-8: bytes pass through (after `head`).
    Pass,
    Decode(Box<Decoder>),
    /// Transcoded to the end.
    Done,
}

impl<R: Read> Utf8Reader<R> {
    pub(crate) fn new(inner: R, configured: Option<&'static Encoding>) -> Self {
        Utf8Reader {
            inner,
            configured: configured.unwrap_or(UTF_8),
            head: Vec::new(),
            state: State::Sniffing,
            src: Vec::new(),
            src_pos: 0,
            out: Vec::new(),
            out_pos: 0,
            offset: 0,
            eof: false,
        }
    }

    /// Reads up to three bytes and decides the encoding.
    fn sniff(&mut self) -> io::Result<()> {
        let mut byte = [0u8; 3];
        while self.head.len() < 3 {
            let n = self.inner.read(&mut byte[..3 - self.head.len()])?;
            if n == 0 {
                break;
            }
            self.head.extend_from_slice(&byte[..n]);
        }
        let (encoding, bom) = Encoding::for_bom(&self.head).unwrap_or((self.configured, 0));
        let head = self.head.split_off(bom);
        self.offset = bom as u64;
        if encoding == UTF_8 {
            self.out = head;
            self.state = State::Pass;
        } else {
            self.src = head;
            self.state = State::Decode(Box::new(encoding.new_decoder_without_bom_handling()));
        }
        Ok(())
    }

    /// Decodes more input into `out`; `Ok(false)` at the end.
    fn decode_more(&mut self) -> io::Result<bool> {
        let State::Decode(decoder) = &mut self.state else {
            return Ok(false);
        };
        loop {
            if self.src_pos == self.src.len() && !self.eof {
                self.src.resize(64 << 10, 0);
                let n = loop {
                    match self.inner.read(&mut self.src) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            self.src.clear();
                            self.src_pos = 0;
                            return Err(e);
                        }
                        Ok(n) => break n,
                    }
                };
                self.src.truncate(n);
                self.src_pos = 0;
                self.eof = n == 0;
            }
            let room = decoder
                .max_utf8_buffer_length_without_replacement(self.src.len() - self.src_pos)
                .unwrap_or(256 << 10)
                .max(16);
            self.out.clear();
            self.out.resize(room, 0);
            self.out_pos = 0;
            let (result, read, written) =
                decoder.decode_to_utf8_without_replacement(&self.src[self.src_pos..], &mut self.out, self.eof);
            self.src_pos += read;
            self.offset += read as u64;
            self.out.truncate(written);
            let flushed = match result {
                encoding_rs::DecoderResult::Malformed(bad, after) => {
                    let at = self.offset - u64::from(bad) - u64::from(after);
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "byte {at} is not valid {} text; check the encoding setting",
                            decoder.encoding().name()
                        ),
                    ));
                }
                encoding_rs::DecoderResult::InputEmpty => self.eof,
                encoding_rs::DecoderResult::OutputFull => false,
            };
            if flushed {
                // The decoder has seen the end: it must not be called again.
                self.state = State::Done;
                return Ok(written > 0);
            }
            if written > 0 {
                return Ok(true);
            }
        }
    }
}

impl<R: Read> Read for Utf8Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if matches!(self.state, State::Sniffing) {
            self.sniff()?;
        }
        if self.out_pos == self.out.len() {
            match self.state {
                State::Done => return Ok(0),
                State::Pass => {
                    self.out.clear();
                    self.out_pos = 0;
                    return self.inner.read(buf);
                }
                _ => {
                    if !self.decode_more()? {
                        return Ok(0);
                    }
                }
            }
        }
        let n = buf.len().min(self.out.len() - self.out_pos);
        buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        // Passing through: fill the rest from the input, so the first read
        // is not just the few bytes looked at for a byte-order mark.
        if matches!(self.state, State::Pass) && self.out_pos == self.out.len() && n < buf.len() {
            return Ok(n + self.inner.read(&mut buf[n..]).unwrap_or(0));
        }
        Ok(n)
    }
}

/// The UTF-8 text of a sample (which may end inside a character), for
/// inference.
pub(crate) fn decode_sample(bytes: &[u8], configured: Option<&'static Encoding>) -> Result<Vec<u8>, String> {
    let (encoding, bom) = Encoding::for_bom(bytes).unwrap_or((configured.unwrap_or(UTF_8), 0));
    let bytes = &bytes[bom..];
    if encoding == UTF_8 {
        return Ok(bytes.to_vec());
    }
    let mut decoder = encoding.new_decoder_without_bom_handling();
    let mut out = vec![
        0;
        decoder
            .max_utf8_buffer_length_without_replacement(bytes.len())
            .unwrap_or(bytes.len() * 3 + 16)
    ];
    let (result, read, written) = decoder.decode_to_utf8_without_replacement(bytes, &mut out, false);
    if let encoding_rs::DecoderResult::Malformed(bad, after) = result {
        let at = bom + read - usize::from(bad) - usize::from(after);
        return Err(format!(
            "byte {at} is not valid {} text; check the encoding setting",
            encoding.name()
        ));
    }
    out.truncate(written);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8], enc: Option<&str>, step: usize) -> io::Result<String> {
        struct Trickle<'a>(&'a [u8], usize);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let enc = enc.map(|e| lookup(e).unwrap());
        let mut r = Utf8Reader::new(Trickle(bytes, step), enc);
        let mut out = String::new();
        r.read_to_string(&mut out)?;
        Ok(out)
    }

    #[test]
    fn windows_1252_accents_and_the_euro_sign_become_utf8() {
        // "Zoë,€5\n" in Windows-1252.
        let input = b"name,price\nZo\xeb,\x805\nJos\xe9,\x80\x31\n";
        for step in [1, 2, 7, 1000] {
            let text = read_all(input, Some("windows-1252"), step).unwrap();
            assert_eq!(text, "name,price\nZoë,€5\nJosé,€1\n", "step {step}");
        }
    }

    #[test]
    fn byte_order_marks_decide_and_are_dropped() {
        assert_eq!(read_all(b"\xef\xbb\xbfid\n1\n", None, 1).unwrap(), "id\n1\n");
        let utf16le: Vec<u8> = [0xff, 0xfe]
            .into_iter()
            .chain("id,n\n€,2\n".encode_utf16().flat_map(|u| u.to_le_bytes()))
            .collect();
        for step in [1, 3, 64] {
            assert_eq!(
                read_all(&utf16le, Some("latin1"), step).unwrap(),
                "id,n\n€,2\n",
                "step {step}"
            );
        }
        // Without a BOM, UTF-8 passes through untouched.
        assert_eq!(read_all("é\n".as_bytes(), None, 1).unwrap(), "é\n");
    }

    #[test]
    fn undecodable_bytes_are_an_error_with_their_offset() {
        // A lone high surrogate in UTF-16LE.
        let bad = [0xff, 0xfe, b'a', 0, 0x00, 0xd8, b'b', 0];
        let err = read_all(&bad, None, 100).unwrap_err();
        assert!(err.to_string().contains("not valid UTF-16LE"), "{err}");
        assert!(lookup("klingon").unwrap_err().contains("windows-1252"));
    }
}
