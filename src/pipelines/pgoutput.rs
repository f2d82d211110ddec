//! The pgoutput logical replication messages (protocol version 1, text tuples) that carry
//! changes: Relation, Insert, Update, Delete and Truncate. Begin, Commit and logical messages
//! are decoded by `pgwire-replication` itself; Type and Origin are read past. Decoding never
//! panics on a short or malformed message: it says what was wrong.

/// One column value in a tuple.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    /// A TOASTed value that did not change (the replica keeps the one it has).
    Unchanged,
    Text(String),
}

/// A column as a Relation message describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct RelColumn {
    pub name: String,
    pub type_oid: u32,
    /// Part of the replica identity.
    pub key: bool,
}

/// A table as a Relation message describes it (sent before its first change in a session and
/// after each change of its schema).
#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    pub id: u32,
    pub schema: String,
    pub name: String,
    /// `d` default, `n` nothing, `f` full, `i` index.
    pub identity: u8,
    pub columns: Vec<RelColumn>,
}

/// A decoded change message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Relation(Relation),
    Insert {
        rel: u32,
        new: Vec<Cell>,
    },
    /// `old`: the old key (`K`) or whole old row (`O`, replica identity full), when sent.
    Update {
        rel: u32,
        old: Option<Vec<Cell>>,
        new: Vec<Cell>,
    },
    Delete {
        rel: u32,
        old: Vec<Cell>,
    },
    Truncate {
        rels: Vec<u32>,
    },
    /// Type, Origin and anything else that carries no row change.
    Other,
}

struct Reader<'a> {
    b: &'a [u8],
}

fn short(what: &str) -> String {
    format!("pgoutput: message ends inside {what}")
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if self.b.len() < n {
            return Err(short(what));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }
    fn i16(&mut self, what: &str) -> Result<i16, String> {
        Ok(i16::from_be_bytes(self.take(2, what)?.try_into().unwrap()))
    }
    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn cstr(&mut self, what: &str) -> Result<String, String> {
        let end = self
            .b
            .iter()
            .position(|&c| c == 0)
            .ok_or_else(|| short(what))?;
        let s = String::from_utf8_lossy(&self.b[..end]).into_owned();
        self.b = &self.b[end + 1..];
        Ok(s)
    }
    fn tuple(&mut self) -> Result<Vec<Cell>, String> {
        let n = self.i16("a tuple's column count")?;
        let mut out = Vec::with_capacity(n.max(0) as usize);
        for _ in 0..n {
            out.push(match self.u8("a tuple column")? {
                b'n' => Cell::Null,
                b'u' => Cell::Unchanged,
                b't' | b'b' => {
                    let len = self.u32("a column length")? as usize;
                    Cell::Text(
                        String::from_utf8_lossy(self.take(len, "a column value")?).into_owned(),
                    )
                }
                other => return Err(format!("pgoutput: unknown tuple column kind {other:?}")),
            });
        }
        Ok(out)
    }
}

/// Decodes one pgoutput message.
pub fn decode(data: &[u8]) -> Result<Message, String> {
    let mut r = Reader { b: data };
    let tag = r.u8("the message tag")?;
    Ok(match tag {
        b'R' => {
            let id = r.u32("the relation id")?;
            let schema = r.cstr("the namespace")?;
            let name = r.cstr("the relation name")?;
            let identity = r.u8("the replica identity")?;
            let n = r.i16("the column count")?;
            let mut columns = Vec::with_capacity(n.max(0) as usize);
            for _ in 0..n {
                let flags = r.u8("column flags")?;
                let name = r.cstr("a column name")?;
                let type_oid = r.u32("a column type")?;
                let _typmod = r.u32("a column type modifier")?;
                columns.push(RelColumn {
                    name,
                    type_oid,
                    key: flags & 1 == 1,
                });
            }
            Message::Relation(Relation {
                id,
                schema,
                name,
                identity,
                columns,
            })
        }
        b'I' => {
            let rel = r.u32("the relation id")?;
            if r.u8("the tuple tag")? != b'N' {
                return Err("pgoutput: Insert without a new tuple".into());
            }
            Message::Insert {
                rel,
                new: r.tuple()?,
            }
        }
        b'U' => {
            let rel = r.u32("the relation id")?;
            let mut tag = r.u8("the tuple tag")?;
            let mut old = None;
            if tag == b'K' || tag == b'O' {
                old = Some(r.tuple()?);
                tag = r.u8("the tuple tag")?;
            }
            if tag != b'N' {
                return Err("pgoutput: Update without a new tuple".into());
            }
            Message::Update {
                rel,
                old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let rel = r.u32("the relation id")?;
            let tag = r.u8("the tuple tag")?;
            if tag != b'K' && tag != b'O' {
                return Err("pgoutput: Delete without an old tuple".into());
            }
            Message::Delete {
                rel,
                old: r.tuple()?,
            }
        }
        b'T' => {
            let n = r.u32("the relation count")?;
            let _options = r.u8("truncate options")?;
            let mut rels = Vec::with_capacity(n.min(1024) as usize);
            for _ in 0..n {
                rels.push(r.u32("a relation id")?);
            }
            Message::Truncate { rels }
        }
        _ => Message::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(cells: &[Option<&str>]) -> Vec<u8> {
        let mut b = (cells.len() as i16).to_be_bytes().to_vec();
        for c in cells {
            match c {
                None => b.push(b'n'),
                Some("\u{0}") => b.push(b'u'),
                Some(s) => {
                    b.push(b't');
                    b.extend((s.len() as u32).to_be_bytes());
                    b.extend(s.as_bytes());
                }
            }
        }
        b
    }

    #[test]
    fn relation_and_changes() {
        let mut m = vec![b'R'];
        m.extend(7u32.to_be_bytes());
        m.extend(b"public\0orders\0d");
        m.extend(2i16.to_be_bytes());
        m.extend([1u8]);
        m.extend(b"id\0");
        m.extend(23u32.to_be_bytes());
        m.extend((-1i32).to_be_bytes());
        m.extend([0u8]);
        m.extend(b"note\0");
        m.extend(25u32.to_be_bytes());
        m.extend((-1i32).to_be_bytes());
        let Message::Relation(r) = decode(&m).unwrap() else {
            panic!()
        };
        assert_eq!(
            (r.id, r.schema.as_str(), r.name.as_str()),
            (7, "public", "orders")
        );
        assert!(r.columns[0].key && !r.columns[1].key);

        let mut u = vec![b'U'];
        u.extend(7u32.to_be_bytes());
        u.push(b'K');
        u.extend(tuple(&[Some("1"), None]));
        u.push(b'N');
        u.extend(tuple(&[Some("2"), Some("\u{0}")]));
        assert_eq!(
            decode(&u).unwrap(),
            Message::Update {
                rel: 7,
                old: Some(vec![Cell::Text("1".into()), Cell::Null]),
                new: vec![Cell::Text("2".into()), Cell::Unchanged]
            }
        );
        assert!(decode(&u[..u.len() - 1]).is_err());
        assert!(decode(b"I\0\0\0\x07X").is_err());
    }
}
