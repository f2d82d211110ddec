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

/// An audit row as `audit-list` shows it.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditRow {
    pub id: i64,
    pub at: String,
    pub user_id: Option<String>,
    pub key_id: Option<String>,
    pub server: String,
    pub tool: String,
    /// The call's arguments with secrets redacted.
    pub arguments: serde_json::Value,
    /// `ok`, `error` or `refused`.
    pub outcome: String,
    pub detail: Option<String>,
}

/// Audit rows newest first, optionally filtered; paged by id (`before` = last id seen).
pub fn list(
    conn: &Connection,
    user_id: Option<&str>,
    tool: Option<&str>,
    since: Option<&str>,
    before: Option<i64>,
    limit: usize,
) -> Result<(Vec<AuditRow>, Option<i64>)> {
    let mut rows = conn
        .prepare_cached(
            "SELECT id, at, user_id, key_id, server, tool, arguments, outcome, detail FROM audit_log
             WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR tool = ?2) AND (?3 IS NULL OR at >= ?3)
               AND (?4 IS NULL OR id < ?4)
             ORDER BY id DESC LIMIT ?5",
        )?
        .query_map(params![user_id, tool, since, before, (limit + 1) as i64], |r| {
            let args: String = r.get(6)?;
            Ok(AuditRow {
                id: r.get(0)?,
                at: r.get(1)?,
                user_id: r.get(2)?,
                key_id: r.get(3)?,
                server: r.get(4)?,
                tool: r.get(5)?,
                arguments: serde_json::from_str(&args).unwrap_or(serde_json::Value::String(args)),
                outcome: r.get(7)?,
                detail: r.get(8)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|r| r.id)
    } else {
        None
    };
    Ok((rows, next))
}
