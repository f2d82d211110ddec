//! MCP session rows: a session is created at `initialize`, read back after a restart (or by
//! another node), touched in batches, and deleted on DELETE, expiry or revocation.

use super::Conn;
use super::sql::Row;
use crate::params;

use crate::error::Result;

/// A stored MCP session.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub id: String,
    pub server: String,
    pub user_id: String,
    pub key_id: String,
    pub protocol_version: String,
    pub client_info: String,
    pub client_capabilities: String,
    pub log_level: String,
    pub initialized: bool,
    pub created_at: String,
    pub last_seen_at: String,
}

const COLUMNS: &str = "id, server, user_id, key_id, protocol_version, client_info, \
                       client_capabilities, log_level, initialized, created_at, last_seen_at";

fn from_row(r: &Row<'_>) -> Result<SessionRow> {
    Ok(SessionRow {
        id: r.get(0)?,
        server: r.get(1)?,
        user_id: r.get(2)?,
        key_id: r.get(3)?,
        protocol_version: r.get(4)?,
        client_info: r.get(5)?,
        client_capabilities: r.get(6)?,
        log_level: r.get(7)?,
        initialized: r.get(8)?,
        created_at: r.get(9)?,
        last_seen_at: r.get(10)?,
    })
}

/// Stores a new session.
pub fn insert(conn: &Conn<'_>, s: &SessionRow) -> Result<()> {
    conn.execute(
        &format!("INSERT INTO mcp_sessions ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
        params![
            s.id,
            s.server,
            s.user_id,
            s.key_id,
            s.protocol_version,
            s.client_info,
            s.client_capabilities,
            s.log_level,
            s.initialized,
            s.created_at,
            s.last_seen_at
        ],
    )?;
    Ok(())
}

/// What [`insert_capped`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capped {
    Inserted,
    /// `max` sessions are live already (on every node together).
    Full,
    /// The user has `max_per_user` live sessions already.
    UserFull,
}

/// Stores a new session unless the live sessions (seen at or after `cutoff`) are at `max`, or
/// the user's at `max_per_user`. Run it inside a write transaction: the caps then hold for
/// every node of a shared store, not per process.
pub fn insert_capped(
    conn: &Conn<'_>,
    s: &SessionRow,
    cutoff: &str,
    max: usize,
    max_per_user: usize,
) -> Result<Capped> {
    let (all, mine): (i64, i64) = conn.query_row(
        "SELECT count(*), coalesce(sum(CASE WHEN user_id = ?2 THEN 1 ELSE 0 END), 0)
         FROM mcp_sessions WHERE last_seen_at >= ?1",
        params![cutoff, s.user_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if all as usize >= max {
        return Ok(Capped::Full);
    }
    if mine as usize >= max_per_user {
        return Ok(Capped::UserFull);
    }
    insert(conn, s)?;
    Ok(Capped::Inserted)
}

/// Which of `ids` are stored sessions still.
pub fn existing(conn: &Conn<'_>, ids: &[String]) -> Result<Vec<String>> {
    let ids = serde_json::to_string(ids).expect("json");
    conn.query_map(
        "SELECT id FROM mcp_sessions WHERE id IN (SELECT value FROM json_each(?1))",
        [ids],
        |r| r.get(0),
    )
}

/// One session by id.
pub fn get(conn: &Conn<'_>, id: &str) -> Result<Option<SessionRow>> {
    let sql = format!("SELECT {COLUMNS} FROM mcp_sessions WHERE id = ?1");
    conn.prepare_cached(&sql)?.query_opt([id], from_row)
}

/// Sessions seen at or after `cutoff` (the live ones).
pub fn live(conn: &Conn<'_>, cutoff: &str) -> Result<Vec<SessionRow>> {
    let sql = format!("SELECT {COLUMNS} FROM mcp_sessions WHERE last_seen_at >= ?1");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([cutoff], from_row)?;
    Ok(rows)
}

/// Deletes one session; true when it existed.
pub fn delete(conn: &Conn<'_>, id: &str) -> Result<bool> {
    Ok(conn.execute("DELETE FROM mcp_sessions WHERE id = ?1", [id])? == 1)
}

/// Deletes sessions last seen before `cutoff`; returns how many.
pub fn delete_idle(conn: &Conn<'_>, cutoff: &str) -> Result<usize> {
    conn.execute("DELETE FROM mcp_sessions WHERE last_seen_at < ?1", [cutoff])
}

/// Records the `initialized` notification.
pub fn mark_initialized(conn: &Conn<'_>, id: &str) -> Result<()> {
    conn.execute(
        "UPDATE mcp_sessions SET initialized = 1 WHERE id = ?1",
        [id],
    )?;
    Ok(())
}

/// Records the level set by `logging/setLevel`.
pub fn set_log_level(conn: &Conn<'_>, id: &str, level: &str) -> Result<()> {
    conn.execute(
        "UPDATE mcp_sessions SET log_level = ?2 WHERE id = ?1",
        params![id, level],
    )?;
    Ok(())
}

/// Writes batched activity times (callers run it in one [`Store::write`](super::Store::write)).
pub fn touch(conn: &Conn<'_>, seen: &[(String, String)]) -> Result<()> {
    {
        let mut stmt = conn.prepare_cached(
            "UPDATE mcp_sessions SET last_seen_at = ?2 WHERE id = ?1 AND last_seen_at < ?2",
        )?;
        for (id, at) in seen {
            stmt.execute(params![id, at])?;
        }
    }
    Ok(())
}
