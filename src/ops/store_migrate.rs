//! Moving a node's SQLite control store to PostgreSQL (`trex store migrate --to …`): the rules
//! — only from SQLite, only into an empty schema at the same version, counted and checksummed
//! table by table — and the audit row, written into the new store so its history says where it
//! came from. Blocking: the CLI runs it on its own thread, with the data dir locked.

use crate::config::StoreConfig;
use crate::error::{Error, Result};
use crate::store::copy::{self, Copied};
use crate::store::{Store, audit};

/// Copies the SQLite store of `from` into the PostgreSQL store `to_url` (schema `schema`,
/// created when missing) and records it in the new store's audit log.
pub fn to_postgres(from: &StoreConfig, to_url: &str, schema: &str) -> Result<Vec<Copied>> {
    if from.postgres_url().is_some() {
        return Err(Error::Invalid(
            "the configured store is PostgreSQL already (store.url); `trex store migrate` copies a \
             SQLite store (trex.db)"
                .into(),
        ));
    }
    if !(to_url.starts_with("postgres://") || to_url.starts_with("postgresql://")) {
        return Err(Error::Invalid(
            "--to must be a PostgreSQL URL (postgres://user@host:5432/database)".into(),
        ));
    }
    let source = Store::open(from)?;
    let target = Store::open(&StoreConfig {
        url: to_url.to_owned(),
        schema: schema.to_owned(),
        pool_size: 2,
        ..from.clone()
    })?;
    let copied = copy::copy_all(&source, &target)?;
    let rows: usize = copied.iter().map(|c| c.rows).sum();
    let entry = audit::AuditEntry {
        user_id: None,
        key_id: None,
        via: "cli",
        remote: None,
        server: "cli".into(),
        tool: "store-migrate".into(),
        arguments: serde_json::json!({"from": source.describe(), "to": target.describe()})
            .to_string(),
        outcome: "ok",
        detail: Some(format!("{} tables, {rows} rows", copied.len())),
    };
    target.write_sync(|c| audit::insert(c, &entry, 0))?;
    Ok(copied)
}
