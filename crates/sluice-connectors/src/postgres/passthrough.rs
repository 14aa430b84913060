//! PostgreSQL to PostgreSQL without decoding: binary `COPY` tuples read
//! from the source go into the destination's `COPY … FROM STDIN` as they
//! are ([`sluice_core::Payload`]).
//!
//! The source offers the format for a stream whose every column has a
//! binary form another server reads as it is (no column read as text, no
//! array of a type whose OID is the database's own); the fingerprint is
//! the columns' types (`format_type`) in order. The sink accepts it when it
//! loads straight into the table (no stage) and the table's columns have
//! exactly those types. Only the tuple framing is read here: rows are
//! counted from it, and the last tuple of each batch is decoded for the
//! position, by the same code as a decoded batch's, so checkpoints and
//! resume are the same on both paths. A batch the destination refuses is
//! decoded ([`CopyPayload`]'s `decode`) and loaded row by row as usual.

use std::pin::Pin;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use sluice_core::{Batch, Decoded, Error, Payload, PayloadFormat, ReadContext, Result, SourceEvent};
use tokio_postgres::CopyOutStream;

use super::decode::{Decode, SIGNATURE, TupleDecoder, tuple_end};
use super::pg_error;
use super::source::{BatchCutter, loose_batch, refuse_rows};
use super::types::PgColumn;

/// The format's id: binary `COPY` tuples, without header and trailer.
pub const FORMAT: &str = "postgres/binary-copy";

/// The first OID a database gives its own objects: types below it are
/// built in, with the same OID on every server.
const FIRST_NORMAL_OID: u32 = 16384;

/// Bytes gathered from the server before framing them.
const CHUNK: usize = 256 * 1024;

/// The format for columns of these types, in this order.
pub fn format_of<'a>(types: impl IntoIterator<Item = &'a str>) -> PayloadFormat {
    PayloadFormat {
        id: FORMAT.into(),
        fingerprint: types.into_iter().collect::<Vec<_>>().join(", ").into(),
    }
}

/// The format a source stream offers, when every column travels as it is:
/// none read as text, no array carrying an element OID of the source
/// database's own (an enum's, a domain's), which the destination would not
/// know.
pub(super) fn offer(columns: &[PgColumn]) -> Option<PayloadFormat> {
    let portable = |c: &PgColumn| !c.as_text && (!matches!(c.decode, Decode::Array(_)) || c.elem < FIRST_NORMAL_OID);
    if columns.is_empty() || !columns.iter().all(portable) {
        return None;
    }
    let types: Option<Vec<&str>> = columns.iter().map(|c| c.meta.db_type.as_deref()).collect();
    Some(format_of(types?))
}

/// What decoding a stream's tuples needs, shared by its payloads.
#[derive(Debug)]
pub(super) struct Layout {
    pub format: PayloadFormat,
    pub decodes: Vec<Decode>,
    pub names: Vec<String>,
    pub schema: SchemaRef,
    pub stream: Arc<str>,
    pub origin: Arc<str>,
}

/// Values that did not decode: row, column, reason.
type Refused = Vec<(usize, usize, String)>;

impl Layout {
    /// Decodes whole tuples (no header) into a batch in the loose schema,
    /// and the values that did not decode.
    fn decode(&self, tuples: &[u8]) -> Result<(arrow::array::RecordBatch, Refused)> {
        let mut decoder = TupleDecoder::new(&self.decodes).headerless();
        let used = decoder
            .decode(tuples, usize::MAX)
            .map_err(|e| Error::data(self.origin.to_string(), e))?;
        if used != tuples.len() {
            return Err(Error::Internal(format!(
                "{}: a passed-through batch ends inside a tuple ({used} of {} bytes)",
                self.origin,
                tuples.len()
            )));
        }
        let (arrays, bad) = decoder.finish_batch();
        Ok((loose_batch(&self.schema, arrays)?, bad))
    }
}

/// One batch's tuples, as the source server sent them.
#[derive(Debug)]
pub(super) struct CopyPayload {
    layout: Arc<Layout>,
    tuples: Bytes,
}

impl CopyPayload {
    /// The tuples, shared rather than copied.
    pub(super) fn tuples(&self) -> Bytes {
        self.tuples.clone()
    }
}

impl Payload for CopyPayload {
    fn format(&self) -> &PayloadFormat {
        &self.layout.format
    }

    fn bytes(&self) -> &[u8] {
        &self.tuples
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn decode(&self) -> Result<Decoded> {
        let l = &self.layout;
        let (data, bad) = l.decode(&self.tuples)?;
        let names: Vec<&str> = l.names.iter().map(String::as_str).collect();
        let (data, refused) = refuse_rows(&l.schema, data, &bad, &names, &l.stream, &l.origin)?;
        Ok(Decoded { data, refused })
    }
}

/// The length of the binary `COPY` header at the start of `buf`, once it is all there.
fn header_len(buf: &[u8]) -> std::result::Result<Option<usize>, String> {
    if buf.len() < SIGNATURE.len() + 8 {
        return Ok(None);
    }
    if &buf[..SIGNATURE.len()] != SIGNATURE {
        return Err("the server's COPY output is not in binary format".into());
    }
    let ext = i32::from_be_bytes([buf[15], buf[16], buf[17], buf[18]]);
    let len = 19 + ext.max(0) as usize;
    Ok((buf.len() >= len).then_some(len))
}

/// Reads a partition's `COPY` output into batches of undecoded tuples, cut
/// where decoded batches would be (rows or bytes), each with the position
/// after its last row. Stops at the end of the output or, between chunks,
/// when the read is cancelled (what was framed is still sent).
pub(super) async fn read(
    mut rows_in: Pin<&mut CopyOutStream>,
    layout: Arc<Layout>,
    cutter: &mut BatchCutter<'_>,
    ctx: &ReadContext,
    url: &str,
) -> Result<()> {
    let ncols = layout.decodes.len();
    let data_err = |e: String| Error::data(layout.origin.to_string(), e);
    let mut buf = BytesMut::new();
    let mut header = false;
    // Whole tuples of the batch being gathered: their bytes at the start of
    // `buf`, their count, and where the last one starts.
    let (mut framed, mut rows, mut last) = (0usize, 0usize, 0usize);
    let mut trailer = false;
    let mut ended = false;
    while !ended {
        if ctx.cancel.is_cancelled() {
            break;
        }
        match rows_in.next().await {
            Some(chunk) => {
                let chunk = chunk.map_err(|e| pg_error(url, e))?;
                if buf.capacity() - buf.len() < chunk.len() {
                    // Room for a whole batch at once: growing by doubling
                    // would copy its bytes again and again.
                    buf.reserve(ctx.limits.bytes.max(chunk.len()) + CHUNK);
                }
                buf.extend_from_slice(&chunk);
            }
            None => ended = true,
        }
        if buf.len() - framed < CHUNK && !ended {
            continue;
        }
        if !header {
            match header_len(&buf).map_err(data_err)? {
                Some(n) => {
                    buf.advance(n);
                    header = true;
                }
                None => continue,
            }
        }
        while !trailer {
            if rows >= ctx.limits.rows.max(1) || framed >= ctx.limits.bytes {
                let tuples = buf.split_to(framed).freeze();
                send(&layout, cutter, ctx, tuples, rows, last).await?;
                (framed, rows, last) = (0, 0, 0);
                continue;
            }
            let rest = &buf[framed..];
            if rest.len() >= 2 && rest[..2] == [0xff, 0xff] {
                trailer = true;
                break;
            }
            match tuple_end(rest, ncols).map_err(data_err)? {
                Some(len) => {
                    last = framed;
                    framed += len;
                    rows += 1;
                }
                None => break,
            }
        }
    }
    if ended && (!trailer || buf.len() != framed + 2) {
        return Err(data_err("the server's COPY output ended in the middle of a row".into()));
    }
    if rows > 0 || cutter.rows() == 0 {
        let tuples = buf.split_to(framed).freeze();
        send(&layout, cutter, ctx, tuples, rows, last).await?;
    }
    Ok(())
}

/// Sends `rows` tuples (the last one at `last`) as one batch.
async fn send(
    layout: &Arc<Layout>,
    cutter: &mut BatchCutter<'_>,
    ctx: &ReadContext,
    tuples: Bytes,
    rows: usize,
    last: usize,
) -> Result<()> {
    // The position comes from the last row, decoded as a decoded batch's is.
    let (tail, _) = layout.decode(&tuples[last..])?;
    cutter.advance(rows as u64, &tail)?;
    let payload = CopyPayload {
        layout: layout.clone(),
        tuples,
    };
    let mut batch = Batch::encoded(layout.stream.clone(), layout.origin.clone(), rows, Arc::new(payload))?;
    batch.position = Some(cutter.position());
    ctx.out
        .send(SourceEvent::Batch(batch))
        .await
        .map_err(|_| Error::Interrupted)
}

#[cfg(test)]
mod tests {
    use super::super::decode::tests::tuple;
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Field, Schema};

    fn layout() -> Arc<Layout> {
        Arc::new(Layout {
            format: format_of(["bigint", "text"]),
            decodes: vec![Decode::Int64, Decode::Text],
            names: vec!["id".into(), "v".into()],
            schema: Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("v", DataType::Utf8, true),
            ])),
            stream: "t".into(),
            origin: "db t".into(),
        })
    }

    #[test]
    fn a_payload_decodes_to_the_rows_and_refuses_what_a_decoded_read_refuses() {
        let mut tuples = tuple(&[Some(&1i64.to_be_bytes()), Some(b"one")]);
        tuples.extend(tuple(&[Some(&2i64.to_be_bytes()), Some(b"\xff")]));
        tuples.extend(tuple(&[Some(&3i64.to_be_bytes()), None]));
        let p = CopyPayload {
            layout: layout(),
            tuples: tuples.into(),
        };
        let d = p.decode().unwrap();
        assert_eq!(d.data.num_rows(), 2);
        let ids = d.data.column(0).as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!((ids.value(0), ids.value(1)), (1, 3));
        assert_eq!(d.refused.len(), 1);
        assert!(d.refused[0].reason.starts_with("column `v`"), "{}", d.refused[0].reason);
    }

    #[test]
    fn the_header_is_measured_only_once_complete() {
        let mut h = SIGNATURE.to_vec();
        h.extend([0, 0, 0, 0, 0, 0, 0, 4, 9, 9]);
        assert_eq!(header_len(&h).unwrap(), None, "extension not all there");
        h.extend([9, 9]);
        assert_eq!(header_len(&h).unwrap(), Some(23));
        assert!(header_len(b"id,v\n1,one\n2,two\n3,three\n").is_err());
    }

    #[test]
    fn formats_match_only_for_the_same_types_in_the_same_order() {
        assert_eq!(format_of(["bigint", "text"]), format_of(["bigint", "text"]));
        assert_ne!(format_of(["bigint", "text"]), format_of(["text", "bigint"]));
        assert_ne!(format_of(["numeric(12,2)"]), format_of(["numeric(12,3)"]));
    }
}
