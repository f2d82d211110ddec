//! The audit log: one row per mutating tool call, allowed or refused.

use rusqlite::{Connection, params};

use crate::error::Result;
use crate::util::now_rfc3339;

/// One audit entry to write.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub user_id: Option<String>,
    pub key_id: Option<String>,
    pub server: String,
    pub tool: String,
    /// Arguments as JSON, secrets already redacted.
    pub arguments: String,
    /// `ok`, `error` or `refused`.
    pub outcome: &'static str,
    pub detail: Option<String>,
}

/// Appends an entry.
pub fn insert(conn: &Connection, e: &AuditEntry) -> Result<()> {
    conn.execute(
        "INSERT INTO audit_log (at, user_id, key_id, server, tool, arguments, outcome, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            now_rfc3339(),
            e.user_id,
            e.key_id,
            e.server,
            e.tool,
            e.arguments,
            e.outcome,
            e.detail
        ],
    )?;
    Ok(())
}

/// Number of entries for a tool (used by tests and status).
pub fn count_for_tool(conn: &Connection, tool: &str) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT count(*) FROM audit_log WHERE tool = ?1",
        [tool],
        |r| r.get(0),
    )?)
}
