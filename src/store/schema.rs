//! Schema bootstrap: applies the versions of `schema.sql` (SQLite: above `PRAGMA user_version`)
//! or `schema.pg.sql` (PostgreSQL: above the row of `schema_version`) in one transaction, so a
//! store is always at a whole version. Both files number their versions alike.

use std::cell::RefCell;

use super::Conn;
use super::pg::{PgConn, WRITE_LOCK};
use crate::error::{Error, Result};

/// The SQLite schema, embedded at build time.
pub const SCHEMA_SQL: &str = include_str!("../../schema.sql");

/// The PostgreSQL schema, embedded at build time.
pub const SCHEMA_PG_SQL: &str = include_str!("../../schema.pg.sql");

/// `(version, sql)` pairs parsed from `schema.sql`, in file order.
pub fn versions() -> Vec<(i64, String)> {
    parse(SCHEMA_SQL)
}

/// The schema file a store of `backend` is built by, and its `(version, sql)` steps.
pub fn steps(backend: super::Backend) -> (&'static str, Vec<(i64, String)>) {
    match backend {
        super::Backend::Sqlite => ("schema.sql", parse(SCHEMA_SQL)),
        super::Backend::Postgres => ("schema.pg.sql", parse(SCHEMA_PG_SQL)),
    }
}

/// `(version, sql)` pairs of a schema file.
fn parse(text: &str) -> Vec<(i64, String)> {
    let mut out: Vec<(i64, String)> = Vec::new();
    for line in text.lines() {
        if let Some(v) = line.trim().strip_prefix("-- version:") {
            let n = v.trim().parse().expect("schema file: bad version marker");
            out.push((n, String::new()));
        } else if let Some((_, sql)) = out.last_mut() {
            sql.push_str(line);
            sql.push('\n');
        }
    }
    out
}

/// The newest version in `schema.sql` (and `schema.pg.sql`, which keeps pace).
pub fn current_version() -> i64 {
    versions().last().map(|(v, _)| *v).unwrap_or(0)
}

fn too_new(have: i64, want: i64) -> Error {
    Error::Other(format!(
        "the store is at schema version {have}, newer than this binary ({want}); upgrade trex"
    ))
}

/// Brings a SQLite store to [`current_version`]; refuses a store newer than this binary.
pub(super) fn bootstrap(conn: &mut rusqlite::Connection) -> Result<()> {
    let have: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let want = current_version();
    if have > want {
        return Err(too_new(have, want));
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

/// Brings a PostgreSQL store (the tables in `schema`) to [`current_version`], under the
/// store's write lock so that nodes starting at once apply each version once.
pub(super) fn bootstrap_pg(conn: &RefCell<PgConn>, schema: &str) -> Result<()> {
    let mut c = conn.borrow_mut();
    let client = c.client();
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
    tx.batch_execute(&format!(
        "SET LOCAL client_min_messages = warning;
         CREATE SCHEMA IF NOT EXISTS \"{schema}\";
         CREATE TABLE IF NOT EXISTS \"{schema}\".schema_version (version BIGINT NOT NULL);"
    ))?;
    let have: i64 = tx
        .query_opt(
            &format!("SELECT max(version) FROM \"{schema}\".schema_version"),
            &[],
        )?
        .and_then(|r| r.get::<_, Option<i64>>(0))
        .unwrap_or(0);
    let want = current_version();
    if have > want {
        return Err(too_new(have, want));
    }
    let steps = parse(SCHEMA_PG_SQL);
    if steps.last().map(|(v, _)| *v) != Some(want) {
        return Err(Error::Other(format!(
            "schema.pg.sql does not reach schema version {want}"
        )));
    }
    for (v, sql) in steps.into_iter().filter(|(v, _)| *v > have) {
        tx.batch_execute(&sql)?;
        tx.execute(&format!("DELETE FROM \"{schema}\".schema_version"), &[])?;
        tx.execute(
            &format!("INSERT INTO \"{schema}\".schema_version (version) VALUES ($1)"),
            &[&v],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// The version a store is at.
pub fn version(conn: &Conn<'_>) -> Result<i64> {
    match conn.lite() {
        Some(c) => Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?),
        None => conn.query_row("SELECT max(version) FROM schema_version", (), |r| r.get(0)),
    }
}
