//! PostgreSQL's logical replication messages (`pgoutput`, protocol version
//! 1), as a change-capture source receives them: transaction bounds,
//! relation descriptions and row changes.
//!
//! Row values come as the server sent them: with the `binary` option, each
//! in its type's binary send format, the one binary `COPY` uses, so
//! [`Tuple::copy_tuple`] turns a row into a `COPY` tuple that the snapshot
//! reader's [`super::decode::TupleDecoder`] reads: a row captured from the
//! log and a row copied from a snapshot are decoded by the same code. A
//! value the update did not change and the server did not send (a TOASTed
//! value, `'u'`) is [`Value::Unchanged`], never a placeholder.
//!
//! Reference: PostgreSQL, "Logical Replication Message Formats".

/// Microseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
const POSTGRES_EPOCH_US: i64 = 946_684_800_000_000;

/// One `pgoutput` message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A transaction starts; `final_lsn` is where its commit record is.
    Begin { final_lsn: u64, commit_us: i64, xid: u32 },
    /// A transaction ends; `end_lsn` is where the next one may start.
    Commit { commit_lsn: u64, end_lsn: u64, commit_us: i64 },
    /// The columns of a table, sent before its first change in a session
    /// and again after its definition changed.
    Relation(Relation),
    Insert { relation: u32, new: Tuple },
    /// `old` is the key (`'K'`) or the whole old row (`'O'`, with
    /// `REPLICA IDENTITY FULL`) when the update changed the key or the
    /// identity is full; absent otherwise.
    Update { relation: u32, old: Option<(OldKind, Tuple)>, new: Tuple },
    Delete { relation: u32, old: (OldKind, Tuple) },
    Truncate { cascade: bool, restart_identity: bool, relations: Vec<u32> },
    /// A data type's name, sent before a relation that uses a type of the
    /// database's own.
    Type { oid: u32, namespace: String, name: String },
    Origin { lsn: u64, name: String },
    /// `pg_logical_emit_message` output (a heartbeat, for one).
    Message { transactional: bool, lsn: u64, prefix: String, content: Vec<u8> },
}

/// Which old row image an update or delete carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldKind {
    /// The replica identity's columns only (the others are NULL).
    Key,
    /// Every column (`REPLICA IDENTITY FULL`).
    Full,
}

/// A table as the log describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    pub oid: u32,
    /// Empty for `pg_catalog`.
    pub namespace: String,
    pub name: String,
    /// `d` default (primary key), `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    pub columns: Vec<RelationColumn>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RelationColumn {
    /// Part of the replica identity (the key).
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
    pub typmod: i32,
}

/// One column's value in a row change.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    Null,
    /// A TOASTed value the change left as it was; the server did not send it.
    Unchanged,
    /// The type's text output (types without a binary form, or no `binary` option).
    Text(Vec<u8>),
    /// The type's binary send format.
    Binary(Vec<u8>),
}

/// The values of one row, in the relation's column order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuple(pub Vec<Value>);

impl Tuple {
    /// The row as a binary `COPY` tuple (field count, then each field's
    /// length and bytes), and the indexes of the unchanged columns, which
    /// it holds as NULL. A text value goes in as its bytes, which is what a
    /// text column's binary form is; `text` says which columns may be text.
    pub fn copy_tuple(&self, text: impl Fn(usize) -> bool) -> Result<(Vec<u8>, Vec<usize>), String> {
        let size: usize = self
            .0
            .iter()
            .map(|v| match v {
                Value::Text(b) | Value::Binary(b) => 4 + b.len(),
                _ => 4,
            })
            .sum();
        let mut out = Vec::with_capacity(2 + size);
        let count = i16::try_from(self.0.len()).map_err(|_| format!("a row of {} columns", self.0.len()))?;
        out.extend_from_slice(&count.to_be_bytes());
        let mut unchanged = Vec::new();
        for (i, v) in self.0.iter().enumerate() {
            match v {
                Value::Null => out.extend_from_slice(&(-1i32).to_be_bytes()),
                Value::Unchanged => {
                    unchanged.push(i);
                    out.extend_from_slice(&(-1i32).to_be_bytes());
                }
                Value::Text(b) if !text(i) => {
                    return Err(format!(
                        "column {} came as text ({:?}); its type has no binary form the reader knows",
                        i + 1,
                        String::from_utf8_lossy(&b[..b.len().min(40)])
                    ));
                }
                Value::Text(b) | Value::Binary(b) => {
                    let len = i32::try_from(b.len()).map_err(|_| format!("a value of {} bytes", b.len()))?;
                    out.extend_from_slice(&len.to_be_bytes());
                    out.extend_from_slice(b);
                }
            }
        }
        Ok((out, unchanged))
    }
}

/// A commit time as microseconds since 1970-01-01 (UTC).
pub fn unix_micros(commit_us: i64) -> i64 {
    commit_us.saturating_add(POSTGRES_EPOCH_US)
}

/// Parses one message (the payload of an `XLogData`, or a row of
/// `pg_logical_slot_get_binary_changes`).
pub fn parse(buf: &[u8]) -> Result<Message, String> {
    let mut r = Reader { buf, at: 0 };
    let tag = r.u8()?;
    let msg = match tag {
        b'B' => Message::Begin {
            final_lsn: r.u64()?,
            commit_us: r.i64()?,
            xid: r.u32()?,
        },
        b'C' => {
            r.u8()?;
            Message::Commit {
                commit_lsn: r.u64()?,
                end_lsn: r.u64()?,
                commit_us: r.i64()?,
            }
        }
        b'R' => {
            let oid = r.u32()?;
            let namespace = r.string()?;
            let name = r.string()?;
            let replica_identity = r.u8()?;
            let n = r.i16()?;
            let mut columns = Vec::with_capacity(n.max(0) as usize);
            for _ in 0..n {
                columns.push(RelationColumn {
                    key: r.u8()? & 1 == 1,
                    name: r.string()?,
                    type_oid: r.u32()?,
                    typmod: r.i32()?,
                });
            }
            Message::Relation(Relation {
                oid,
                namespace,
                name,
                replica_identity,
                columns,
            })
        }
        b'I' => {
            let relation = r.u32()?;
            r.expect(b'N')?;
            Message::Insert {
                relation,
                new: r.tuple()?,
            }
        }
        b'U' => {
            let relation = r.u32()?;
            let old = match r.u8()? {
                b'N' => None,
                kind => {
                    let kind = old_kind(kind)?;
                    let old = r.tuple()?;
                    r.expect(b'N')?;
                    Some((kind, old))
                }
            };
            Message::Update {
                relation,
                old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let relation = r.u32()?;
            let kind = old_kind(r.u8()?)?;
            Message::Delete {
                relation,
                old: (kind, r.tuple()?),
            }
        }
        b'T' => {
            let n = r.u32()?;
            let options = r.u8()?;
            let relations = (0..n).map(|_| r.u32()).collect::<Result<_, _>>()?;
            Message::Truncate {
                cascade: options & 1 != 0,
                restart_identity: options & 2 != 0,
                relations,
            }
        }
        b'Y' => Message::Type {
            oid: r.u32()?,
            namespace: r.string()?,
            name: r.string()?,
        },
        b'O' => Message::Origin {
            lsn: r.u64()?,
            name: r.string()?,
        },
        b'M' => {
            let transactional = r.u8()? & 1 == 1;
            let lsn = r.u64()?;
            let prefix = r.string()?;
            let len = r.u32()? as usize;
            Message::Message {
                transactional,
                lsn,
                prefix,
                content: r.take(len)?.to_vec(),
            }
        }
        other => {
            return Err(format!(
                "a pgoutput message of type {:?} (protocol version 1 has B, C, R, I, U, D, T, Y, O, M)",
                other as char
            ));
        }
    };
    if r.at != buf.len() {
        return Err(format!(
            "a pgoutput {:?} message has {} bytes after its end",
            tag as char,
            buf.len() - r.at
        ));
    }
    Ok(msg)
}

fn old_kind(tag: u8) -> Result<OldKind, String> {
    match tag {
        b'K' => Ok(OldKind::Key),
        b'O' => Ok(OldKind::Full),
        other => Err(format!("an old row marked {:?} (expected K or O)", other as char)),
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| {
            format!(
                "a pgoutput message ends early ({} bytes, {n} more wanted at byte {})",
                self.buf.len(),
                self.at
            )
        })?;
        let out = &self.buf[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn expect(&mut self, tag: u8) -> Result<(), String> {
        match self.u8()? {
            t if t == tag => Ok(()),
            t => Err(format!("expected {:?} in a pgoutput message, found {:?}", tag as char, t as char)),
        }
    }

    /// A NUL-terminated string.
    fn string(&mut self) -> Result<String, String> {
        let rest = &self.buf[self.at..];
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or("a pgoutput string without its terminating NUL")?;
        let s = String::from_utf8_lossy(&rest[..len]).into_owned();
        self.at += len + 1;
        Ok(s)
    }

    fn tuple(&mut self) -> Result<Tuple, String> {
        let n = self.i16()?;
        let mut values = Vec::with_capacity(n.max(0) as usize);
        for _ in 0..n {
            values.push(match self.u8()? {
                b'n' => Value::Null,
                b'u' => Value::Unchanged,
                kind @ (b't' | b'b') => {
                    let len = self.i32()?;
                    let len = usize::try_from(len).map_err(|_| format!("a value of length {len}"))?;
                    let bytes = self.take(len)?.to_vec();
                    if kind == b't' { Value::Text(bytes) } else { Value::Binary(bytes) }
                }
                other => return Err(format!("a column value marked {:?} (expected n, u, t or b)", other as char)),
            });
        }
        Ok(Tuple(values))
    }
}

#[cfg(test)]
mod tests {
    use super::super::decode::{Decode, TupleDecoder};
    use super::*;
    use arrow::array::{Array, AsArray};

    fn cstr(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    /// A binary column value: `b`, its length, its bytes.
    fn binary(out: &mut Vec<u8>, bytes: &[u8]) {
        out.push(b'b');
        out.extend((bytes.len() as i32).to_be_bytes());
        out.extend_from_slice(bytes);
    }

    #[test]
    fn a_relation_and_an_update_with_a_key_change_parse_field_by_field() {
        let mut m = vec![b'R'];
        m.extend(16_400u32.to_be_bytes());
        cstr(&mut m, "public");
        cstr(&mut m, "film");
        m.push(b'd');
        m.extend(2i16.to_be_bytes());
        m.push(1);
        cstr(&mut m, "film_id");
        m.extend(23u32.to_be_bytes());
        m.extend((-1i32).to_be_bytes());
        m.push(0);
        cstr(&mut m, "title");
        m.extend(1043u32.to_be_bytes());
        m.extend(259i32.to_be_bytes());
        let Message::Relation(rel) = parse(&m).unwrap() else { panic!("not a relation") };
        assert_eq!((rel.oid, rel.namespace.as_str(), rel.name.as_str()), (16_400, "public", "film"));
        assert!(rel.columns[0].key && !rel.columns[1].key);
        assert_eq!((rel.columns[1].type_oid, rel.columns[1].typmod), (1043, 259));

        let mut u = vec![b'U'];
        u.extend(16_400u32.to_be_bytes());
        u.push(b'K');
        u.extend(2i16.to_be_bytes());
        binary(&mut u, &7i32.to_be_bytes());
        u.push(b'n');
        u.push(b'N');
        u.extend(2i16.to_be_bytes());
        binary(&mut u, &8i32.to_be_bytes());
        u.push(b'u');
        let msg = parse(&u).unwrap();
        let Message::Update { relation, old: Some((OldKind::Key, old)), new } = msg else { panic!("{msg:?}") };
        assert_eq!(relation, 16_400);
        assert_eq!(old.0, vec![Value::Binary(7i32.to_be_bytes().to_vec()), Value::Null]);
        assert_eq!(new.0[1], Value::Unchanged);
    }

    /// Changes made on the real server, read from a slot with
    /// `pg_logical_slot_get_binary_changes` (`SLUICE_TEST_PG_URL`, default
    /// the local server; needs `wal_level = logical`).
    #[tokio::test]
    async fn changes_read_from_a_real_slot_parse_and_decode_like_a_snapshot() {
        let server =
            std::env::var("SLUICE_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let skip = |why: String| {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
            eprintln!("SKIPPED: {why}");
        };
        let admin = match crate::postgres::connect(&format!("{server}/postgres")).await {
            Ok(c) => c,
            Err(e) => return skip(format!("PostgreSQL not reachable at {server}: {e}")),
        };
        let level = admin.query_one("SHOW wal_level", &[]).await.unwrap().get::<_, String>(0);
        if level != "logical" {
            return skip(format!("wal_level is {level}, not logical (ALTER SYSTEM SET wal_level = logical; restart)"));
        }
        let (db, slot) = (
            format!("sluice_pgoutput_{}", std::process::id()),
            format!("sluice_test_pgoutput_{}", std::process::id()),
        );
        for sql in [format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"), format!("CREATE DATABASE {db}")] {
            admin.batch_execute(&sql).await.unwrap();
        }
        let c = crate::postgres::connect(&format!("{server}/{db}")).await.unwrap();
        let setup = [
            "CREATE TABLE t (id int PRIMARY KEY, v text, n numeric(10,2), big text)".to_string(),
            "CREATE PUBLICATION p FOR TABLE t".into(),
            format!("SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"),
        ];
        for sql in &setup {
            c.batch_execute(sql).await.unwrap();
        }
        // One transaction each; `big` is stored out of line (TOAST).
        let mut changes = Ok(());
        for sql in [
            "INSERT INTO t SELECT 1, 'one', 1.50, string_agg(md5(g::text), '') FROM generate_series(1, 4000) g",
            "UPDATE t SET v = 'uno' WHERE id = 1",
            "UPDATE t SET id = 2 WHERE id = 1",
            "DELETE FROM t WHERE id = 2",
            "TRUNCATE t",
        ] {
            changes = changes.and(c.batch_execute(sql).await);
        }
        let read = c
            .query(
                "SELECT data FROM pg_logical_slot_get_binary_changes($1, NULL, NULL, 'proto_version', '1', \
                 'publication_names', 'p', 'binary', 'true')",
                &[&slot],
            )
            .await;
        // The slot and the database go before any assertion can fail.
        c.batch_execute(&format!("SELECT pg_drop_replication_slot('{slot}')")).await.unwrap();
        drop(c);
        admin.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)")).await.unwrap();
        changes.unwrap();
        let msgs: Vec<Message> = read.unwrap().iter().map(|r| parse(r.get::<_, &[u8]>(0)).unwrap()).collect();

        let tags: String = msgs
            .iter()
            .map(|m| match m {
                Message::Begin { .. } => 'B',
                Message::Commit { .. } => 'C',
                Message::Relation(_) => 'R',
                Message::Insert { .. } => 'I',
                Message::Update { .. } => 'U',
                Message::Delete { .. } => 'D',
                Message::Truncate { .. } => 'T',
                _ => '?',
            })
            .collect();
        // TRUNCATE invalidates the table's cache entry: its relation comes again.
        assert_eq!(tags, "BRICBUCBUCBDCBRTC");
        let Message::Relation(rel) = &msgs[1] else { unreachable!() };
        let names: Vec<&str> = rel.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!((rel.name.as_str(), names), ("t", vec!["id", "v", "n", "big"]));
        assert!(rel.columns[0].key && rel.replica_identity == b'd');

        // The inserted row decodes as the snapshot reader decodes it.
        let Message::Insert { new, .. } = &msgs[2] else { unreachable!() };
        let (tuple, unchanged) = new.copy_tuple(|_| false).unwrap();
        assert!(unchanged.is_empty());
        let decodes = [Decode::Int32, Decode::Text, Decode::Decimal { precision: 10, scale: 2 }, Decode::Text];
        let mut d = TupleDecoder::new(&decodes).headerless();
        d.decode(&tuple, 1).unwrap();
        let (arrays, bad) = d.finish_batch();
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(arrays[0].as_primitive::<arrow::datatypes::Int32Type>().value(0), 1);
        assert_eq!(arrays[1].as_string::<i32>().value(0), "one");
        assert_eq!(arrays[2].as_primitive::<arrow::datatypes::Decimal128Type>().value(0), 150);
        assert_eq!(arrays[3].as_string::<i32>().value(0).len(), 128_000);

        // An update that leaves the TOASTed value alone does not send it.
        let Message::Update { old: None, new, .. } = &msgs[5] else { panic!("{:?}", msgs[5]) };
        assert_eq!(new.0[1], Value::Binary(b"uno".to_vec()));
        assert_eq!(new.0[3], Value::Unchanged);
        // A key change carries the old key.
        let Message::Update { old: Some((OldKind::Key, old)), new, .. } = &msgs[8] else { panic!("{:?}", msgs[8]) };
        assert_eq!(old.0[0], Value::Binary(1i32.to_be_bytes().to_vec()));
        assert_eq!(new.0[0], Value::Binary(2i32.to_be_bytes().to_vec()));
        let Message::Delete { old: (OldKind::Key, old), .. } = &msgs[11] else { panic!("{:?}", msgs[11]) };
        assert_eq!((old.0[0].clone(), old.0[1].clone()), (Value::Binary(2i32.to_be_bytes().to_vec()), Value::Null));
        let Message::Truncate { relations, cascade: false, .. } = &msgs[15] else { panic!("{:?}", msgs[15]) };
        assert_eq!(relations, &vec![rel.oid]);

        // Each transaction's begin names its commit, and commits move forward.
        let mut last_end = 0;
        for pair in msgs.iter().filter(|m| matches!(m, Message::Begin { .. } | Message::Commit { .. })).collect::<Vec<_>>().chunks(2) {
            let (Message::Begin { final_lsn, .. }, Message::Commit { commit_lsn, end_lsn, commit_us }) = (pair[0], pair[1])
            else {
                panic!("{pair:?}")
            };
            assert_eq!(final_lsn, commit_lsn);
            assert!(*end_lsn > last_end && *end_lsn > *commit_lsn);
            last_end = *end_lsn;
            let year_2026 = 1_767_225_600_000_000;
            assert!(unix_micros(*commit_us) > year_2026, "commit time {commit_us}");
        }
    }

    #[test]
    fn truncated_or_unknown_messages_are_errors_that_say_what_is_wrong() {
        let e = parse(&[b'B', 0, 0, 0]).unwrap_err();
        assert!(e.contains("ends early"), "{e}");
        let e = parse(b"S\0\0\0\x01").unwrap_err();
        assert!(e.contains("protocol version 1"), "{e}");
        let mut commit = vec![b'C', 0];
        commit.extend([0u8; 24]);
        commit.push(9);
        assert!(parse(&commit).unwrap_err().contains("after its end"));
        let e = parse(b"I\0\0\0\x01N\0\x01x").unwrap_err();
        assert!(e.contains("expected n, u, t or b"), "{e}");
    }

    #[test]
    fn a_row_becomes_a_copy_tuple_the_snapshot_decoder_reads() {
        let row = Tuple(vec![
            Value::Binary(42i64.to_be_bytes().to_vec()),
            Value::Text(b"caf\xc3\xa9".to_vec()),
            Value::Null,
            Value::Unchanged,
        ]);
        let (tuple, unchanged) = row.copy_tuple(|i| i == 1).unwrap();
        assert_eq!(unchanged, vec![3]);
        let mut d = TupleDecoder::new(&[Decode::Int64, Decode::Text, Decode::Text, Decode::Text]).headerless();
        assert_eq!(d.decode(&tuple, 10).unwrap(), tuple.len());
        let (arrays, bad) = d.finish_batch();
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(arrays[0].as_primitive::<arrow::datatypes::Int64Type>().value(0), 42);
        assert_eq!(arrays[1].as_string::<i32>().value(0), "café");
        assert!(arrays[2].is_null(0) && arrays[3].is_null(0));
        // Text where the reader expects a binary value is refused, naming the column.
        let e = row.copy_tuple(|_| false).unwrap_err();
        assert!(e.starts_with("column 2 came as text"), "{e}");
    }
}
