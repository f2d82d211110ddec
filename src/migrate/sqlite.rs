//! The ledger of a SQLite target (trexdb's main file, a registered SQLite database): read on a
//! read-only connection (a missing file or table is an empty ledger, and nothing is created),
//! and each file applied with its ledger row in one `BEGIN IMMEDIATE` transaction. The
//! transaction takes the database's write lock before it reads the ledger, so a second run on
//! the same file waits, then sees the row and skips the file: no file is applied twice.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{File, LedgerRow, Outcome};
use crate::error::{Error, Result};
use crate::util::now_rfc3339;

/// How long a run waits for another writer of the target.
const BUSY: Duration = Duration::from_secs(30);

fn create_ledger(ledger: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS \"{ledger}\" (
            version     INTEGER PRIMARY KEY,
            name        TEXT NOT NULL,
            checksum    TEXT NOT NULL,
            applied_at  TEXT NOT NULL,
            duration_ms INTEGER NOT NULL,
            applied_by  TEXT,
            success     INTEGER NOT NULL
        )"
    )
}

/// The ledger table `ledger` ([`super::ledger_table`]) of the database at `path`, read-only
/// (after a writer's crash, as [`super::runs::read_only`] says); empty when the file or the
/// table is missing.
pub fn ledger(path: &Path, ledger: &str) -> Result<Vec<LedgerRow>> {
    if !path.exists() {
        return Ok(vec![]);
    }
    Ok(super::runs::read_only(path, |c| read_ledger(c, ledger))?)
}

fn read_ledger(c: &Connection, ledger: &str) -> rusqlite::Result<Vec<LedgerRow>> {
    let exists: bool = c.query_row(
        "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
        [ledger],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(vec![]);
    }
    let mut st = c.prepare(&format!(
        "SELECT version, name, checksum, applied_at, duration_ms, applied_by, success FROM \"{ledger}\" ORDER BY version"
    ))?;
    let rows = st
        .query_map([], |r| {
            Ok(LedgerRow {
                version: r.get(0)?,
                name: r.get(1)?,
                checksum: r.get(2)?,
                applied_at: r.get(3)?,
                duration_ms: r.get(4)?,
                applied_by: r.get(5)?,
                success: r.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Applies `f` to the database at `path` with its ledger row, in one transaction. A file another
/// run applied meanwhile is `skipped`; one that fails is rolled back whole and recorded as
/// `failed` (its error in the outcome).
pub fn apply(path: &Path, ledger: &str, f: &File, applied_by: &str) -> Result<Outcome> {
    let mut c = Connection::open(path)?;
    c.busy_timeout(BUSY)?;
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(&create_ledger(ledger))?;
    let done: Option<(bool, String)> = tx
        .query_row(
            &format!("SELECT success, checksum FROM \"{ledger}\" WHERE version = ?1"),
            [f.version],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((true, sum)) = &done {
        if *sum != f.checksum {
            return Err(Error::Conflict(format!(
                "Checksum mismatch for migration {}: applied meanwhile with SHA-256 {sum}, the file's is {}",
                f.file, f.checksum
            )));
        }
        return Ok(f.outcome("skipped", None, None));
    }
    let started = Instant::now();
    if let Err(e) = super::runs::apply(&tx, &f.sql, |_| {}) {
        drop(tx);
        let ms = started.elapsed().as_millis() as i64;
        record(&mut c, ledger, f, applied_by, ms, false)?;
        return Ok(f.outcome("failed", Some(ms), Some(e.to_string())));
    }
    let ms = started.elapsed().as_millis() as i64;
    tx.execute(
        &format!("INSERT OR REPLACE INTO \"{ledger}\" VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1)"),
        params![f.version, f.name, f.checksum, now_rfc3339(), ms, applied_by],
    )?;
    tx.commit()?;
    Ok(f.outcome("applied", Some(ms), None))
}

/// Writes a ledger row on its own (a failed attempt, after its transaction was rolled back).
fn record(
    c: &mut Connection,
    ledger: &str,
    f: &File,
    by: &str,
    ms: i64,
    success: bool,
) -> Result<()> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(&create_ledger(ledger))?;
    tx.execute(
        &format!("INSERT OR REPLACE INTO \"{ledger}\" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
        params![
            f.version,
            f.name,
            f.checksum,
            now_rfc3339(),
            ms,
            by,
            success
        ],
    )?;
    tx.commit()?;
    Ok(())
}

/// Drops the ledger table `ledger` of the database at `path` (a plugin whose install was undone).
pub fn drop_ledger(path: &Path, ledger: &str) -> Result<()> {
    let c = Connection::open(path)?;
    c.busy_timeout(BUSY)?;
    c.execute_batch(&format!("DROP TABLE IF EXISTS \"{ledger}\""))?;
    Ok(())
}
