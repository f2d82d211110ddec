//! Settings: small JSON values by key (e.g. the master-key check value).

use super::Conn;
use crate::params;

use crate::error::Result;
use crate::util::now_rfc3339;

/// Key of the sealed value that proves the master key matches the store.
pub const MASTER_KEY_CHECK: &str = "master_key_check";

/// A setting's JSON text.
pub fn get(conn: &Conn<'_>, key: &str) -> Result<Option<String>> {
    conn.query_opt("SELECT value FROM settings WHERE key = ?1", [key], |r| {
        r.get(0)
    })
}

/// Sets a setting (JSON text).
pub fn set(conn: &Conn<'_>, key: &str, value: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO settings (key, value, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        params![key, value, now_rfc3339()],
    )?;
    Ok(())
}
