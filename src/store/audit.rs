//! The audit log: one row per mutating call (tool, CLI command or web sign-in), allowed or
//! refused, with retention by row count on each write and by age in [`prune`].

use super::Conn;
use crate::params;

use crate::error::Result;
use crate::util::now_rfc3339;

/// One audit entry to write.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub user_id: Option<String>,
    pub key_id: Option<String>,
    /// `mcp`, `cli` or `web`.
    pub via: &'static str,
    /// Client address, when known.
    pub remote: Option<String>,
    pub server: String,
    pub tool: String,
    /// Arguments as JSON, secrets already redacted.
    pub arguments: String,
    /// `ok`, `error` or `refused`.
    pub outcome: &'static str,
    pub detail: Option<String>,
}

/// Appends an entry, then drops the oldest rows past `max_rows` (0 = no cap).
pub fn insert(conn: &Conn<'_>, e: &AuditEntry, max_rows: u64) -> Result<()> {
    let last: i64 = conn.prepare_cached(
        "INSERT INTO audit_log (at, user_id, key_id, via, remote, server, tool, arguments, outcome, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING id",
    )?
    .query_row(params![
        now_rfc3339(),
        e.user_id,
        e.key_id,
        e.via,
        e.remote,
        e.server,
        e.tool,
        e.arguments,
        e.outcome,
        e.detail
    ], |r| r.get(0))?;
    if max_rows > 0 {
        conn.prepare_cached("DELETE FROM audit_log WHERE id <= ?1")?
            .execute([last - max_rows as i64])?;
    }
    Ok(())
}

/// Drops rows older than `before` (RFC 3339); returns how many.
pub fn prune(conn: &Conn<'_>, before: &str) -> Result<usize> {
    conn.execute("DELETE FROM audit_log WHERE at < ?1", [before])
}

/// Number of rows.
pub fn count(conn: &Conn<'_>) -> Result<i64> {
    conn.query_row("SELECT count(*) FROM audit_log", [], |r| r.get(0))
}

/// Number of entries for a tool (used by tests and status).
pub fn count_for_tool(conn: &Conn<'_>, tool: &str) -> Result<i64> {
    conn.query_row(
        "SELECT count(*) FROM audit_log WHERE tool = ?1",
        [tool],
        |r| r.get(0),
    )
}

/// An audit row as `audit-list` shows it.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditRow {
    pub id: i64,
    pub at: String,
    pub user_id: Option<String>,
    pub key_id: Option<String>,
    /// `mcp`, `cli` or `web`.
    pub via: String,
    pub remote: Option<String>,
    pub server: String,
    pub tool: String,
    /// The call's arguments with secrets redacted.
    pub arguments: serde_json::Value,
    /// `ok`, `error` or `refused`.
    pub outcome: String,
    pub detail: Option<String>,
}

/// Filters of [`list`]; `None` = any.
#[derive(Debug, Default)]
pub struct AuditFilter<'a> {
    pub user_id: Option<&'a str>,
    pub tool: Option<&'a str>,
    pub since: Option<&'a str>,
    pub via: Option<&'a str>,
}

/// Audit rows newest first, optionally filtered; paged by id (`before` = last id seen).
pub fn list(
    conn: &Conn<'_>,
    filter: &AuditFilter<'_>,
    before: Option<i64>,
    limit: usize,
) -> Result<(Vec<AuditRow>, Option<i64>)> {
    let mut rows = conn
        .prepare_cached(
            "SELECT id, at, user_id, key_id, via, remote, server, tool, arguments, outcome, detail FROM audit_log
             WHERE (CAST(?1 AS TEXT) IS NULL OR user_id = ?1) AND (CAST(?2 AS TEXT) IS NULL OR tool = ?2) AND (CAST(?3 AS TEXT) IS NULL OR at >= ?3)
               AND (CAST(?4 AS BIGINT) IS NULL OR id < ?4) AND (CAST(?6 AS TEXT) IS NULL OR via = ?6)
             ORDER BY id DESC LIMIT ?5",
        )?
        .query_map(
            params![filter.user_id, filter.tool, filter.since, before, (limit + 1) as i64, filter.via],
            |r| {
            let args: String = r.get(8)?;
            Ok(AuditRow {
                id: r.get(0)?,
                at: r.get(1)?,
                user_id: r.get(2)?,
                key_id: r.get(3)?,
                via: r.get(4)?,
                remote: r.get(5)?,
                server: r.get(6)?,
                tool: r.get(7)?,
                arguments: serde_json::from_str(&args).unwrap_or(serde_json::Value::String(args)),
                outcome: r.get(9)?,
                detail: r.get(10)?,
            })
        })?;
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|r| r.id)
    } else {
        None
    };
    Ok((rows, next))
}
