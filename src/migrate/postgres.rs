//! The ledger of a PostgreSQL target: read without writing (`to_regclass` first: a database
//! without the table has an empty ledger), and each file applied with its ledger row in one
//! transaction under `pg_advisory_xact_lock` on the target, so a second run — from this server
//! or another — waits for the first, then sees the row and skips the file. trexsql ran its
//! PostgreSQL migrations outside a transaction and without a lock; here a file that fails leaves
//! nothing of itself behind.

use std::time::Instant;

use tokio_postgres::Client;

use super::{File, LedgerRow, Outcome};
use crate::error::{Error, Result};
use crate::util::now_rfc3339;

/// The advisory lock every run on a database takes (per database: the keys hash the name).
const LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtext('trex_schema_history'), hashtext(current_database()))";

fn create_ledger(ledger: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS \"{ledger}\" (
            version     BIGINT PRIMARY KEY,
            name        TEXT NOT NULL,
            checksum    TEXT NOT NULL,
            applied_at  TEXT NOT NULL,
            duration_ms BIGINT NOT NULL,
            applied_by  TEXT,
            success     BOOLEAN NOT NULL
        )"
    )
}

fn db(e: tokio_postgres::Error) -> Error {
    Error::Other(match e.as_db_error() {
        Some(d) => d.message().to_string(),
        None => e.to_string(),
    })
}

/// The ledger table `ledger` ([`super::ledger_table`]), read-only; empty when the table does
/// not exist.
pub async fn ledger(c: &Client, ledger: &str) -> Result<Vec<LedgerRow>> {
    let quoted = format!("\"{ledger}\"");
    let exists: bool = c
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&quoted])
        .await
        .map_err(db)?
        .get(0);
    if !exists {
        return Ok(vec![]);
    }
    let rows = c
        .query(
            &format!(
                "SELECT version, name, checksum, applied_at, duration_ms, applied_by, success FROM \"{ledger}\" ORDER BY version"
            ),
            &[],
        )
        .await
        .map_err(db)?;
    Ok(rows
        .iter()
        .map(|r| LedgerRow {
            version: r.get(0),
            name: r.get(1),
            checksum: r.get(2),
            applied_at: r.get(3),
            duration_ms: r.get(4),
            applied_by: r.get(5),
            success: r.get(6),
        })
        .collect())
}

/// Applies `f` with its ledger row in one transaction under the target's advisory lock.
pub async fn apply(c: &mut Client, ledger: &str, f: &File, applied_by: &str) -> Result<Outcome> {
    let tx = c.transaction().await.map_err(db)?;
    tx.batch_execute(LOCK).await.map_err(db)?;
    tx.batch_execute(&create_ledger(ledger)).await.map_err(db)?;
    let done = tx
        .query_opt(
            &format!("SELECT success, checksum FROM \"{ledger}\" WHERE version = $1"),
            &[&f.version],
        )
        .await
        .map_err(db)?;
    if let Some(r) = done
        && r.get::<_, bool>(0)
    {
        let sum: String = r.get(1);
        if sum != f.checksum {
            return Err(Error::Conflict(format!(
                "Checksum mismatch for migration {}: applied meanwhile with SHA-256 {sum}, the file's is {}",
                f.file, f.checksum
            )));
        }
        tx.commit().await.map_err(db)?;
        return Ok(f.outcome("skipped", None, None));
    }
    if let Err(why) = super::check_transaction_control(&f.sql, true) {
        return Err(Error::Conflict(format!("Migration {} {why}", f.file)));
    }
    let started = Instant::now();
    if let Err(e) = tx.batch_execute(&f.sql).await {
        let msg = db(e).to_string();
        drop(tx);
        let ms = started.elapsed().as_millis() as i64;
        record(c, ledger, f, applied_by, ms).await?;
        return Ok(f.outcome("failed", Some(ms), Some(msg)));
    }
    let ms = started.elapsed().as_millis() as i64;
    tx.execute(
        &format!(
            "INSERT INTO \"{ledger}\" VALUES ($1, $2, $3, $4, $5, $6, true)
             ON CONFLICT (version) DO UPDATE SET name = excluded.name, checksum = excluded.checksum,
               applied_at = excluded.applied_at, duration_ms = excluded.duration_ms,
               applied_by = excluded.applied_by, success = true"
        ),
        &[
            &f.version,
            &f.name,
            &f.checksum,
            &now_rfc3339(),
            &ms,
            &applied_by,
        ],
    )
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(f.outcome("applied", Some(ms), None))
}

/// Records a failed attempt after its transaction was rolled back.
async fn record(c: &mut Client, ledger: &str, f: &File, by: &str, ms: i64) -> Result<()> {
    let tx = c.transaction().await.map_err(db)?;
    tx.batch_execute(LOCK).await.map_err(db)?;
    tx.batch_execute(&create_ledger(ledger)).await.map_err(db)?;
    tx.execute(
        &format!(
            "INSERT INTO \"{ledger}\" VALUES ($1, $2, $3, $4, $5, $6, false)
             ON CONFLICT (version) DO UPDATE SET checksum = excluded.checksum,
               applied_at = excluded.applied_at, duration_ms = excluded.duration_ms,
               applied_by = excluded.applied_by, success = false"
        ),
        &[&f.version, &f.name, &f.checksum, &now_rfc3339(), &ms, &by],
    )
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(())
}

/// Drops the ledger table `ledger` (a plugin whose install was undone).
pub async fn drop_ledger(c: &Client, ledger: &str) -> Result<()> {
    c.batch_execute(&format!("DROP TABLE IF EXISTS \"{ledger}\""))
        .await
        .map_err(db)
}
