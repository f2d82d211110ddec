//! Schema bootstrap: applies the versions of `schema.sql` above `PRAGMA user_version` in one
//! transaction, so a store is always at a whole version.

use super::Conn;
use crate::error::{Error, Result};

/// The schema, embedded at build time.
pub const SCHEMA_SQL: &str = include_str!("../../schema.sql");

/// `(version, sql)` pairs parsed from `schema.sql`, in file order.
pub fn versions() -> Vec<(i64, String)> {
    let mut out: Vec<(i64, String)> = Vec::new();
    for line in SCHEMA_SQL.lines() {
        if let Some(v) = line.trim().strip_prefix("-- version:") {
            let n = v.trim().parse().expect("schema.sql: bad version marker");
            out.push((n, String::new()));
        } else if let Some((_, sql)) = out.last_mut() {
            sql.push_str(line);
            sql.push('\n');
        }
    }
    out
}

/// The newest version in `schema.sql`.
pub fn current_version() -> i64 {
    versions().last().map(|(v, _)| *v).unwrap_or(0)
}

/// Brings the store to [`current_version`]; refuses a store newer than this binary.
pub(super) fn bootstrap(conn: &mut rusqlite::Connection) -> Result<()> {
    let have: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let want = current_version();
    if have > want {
        return Err(Error::Other(format!(
            "trex.db is at schema version {have}, newer than this binary ({want}); upgrade trex"
        )));
    }
    if have == want {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for (v, sql) in versions().into_iter().filter(|(v, _)| *v > have) {
        tx.execute_batch(&sql)?;
        tx.pragma_update(None, "user_version", v)?;
    }
    tx.commit()?;
    Ok(())
}

/// The version a store is at.
pub fn version(conn: &Conn<'_>) -> Result<i64> {
    Ok(conn
        .db()
        .query_row("PRAGMA user_version", [], |r| r.get(0))?)
}
