//! Web (cookie) sessions of the admin page, and the combined listing of web and MCP sessions
//! that the `session-*` tools show. Only the SHA-256 of a cookie token is stored.

use crate::params;
use schemars::JsonSchema;
use serde::Serialize;

use super::{Conn, Page, Paged};
use crate::error::Result;
use crate::util::now_rfc3339;

/// Stores a new web session; returns its id.
pub fn insert(
    conn: &Conn<'_>,
    user_id: &str,
    token_hash: &str,
    ip: Option<&str>,
    user_agent: Option<&str>,
    expires_at: &str,
) -> Result<String> {
    let id = uuid::Uuid::new_v4().to_string();
    conn.execute(
        "INSERT INTO web_sessions (id, token_hash, user_id, ip_address, user_agent, expires_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![id, token_hash, user_id, ip, user_agent, expires_at, now_rfc3339()],
    )?;
    Ok(id)
}

/// `(session id, user id, expires_at)` of a live session by token hash.
pub fn find(conn: &Conn<'_>, token_hash: &str) -> Result<Option<(String, String, String)>> {
    conn
        .prepare_cached("SELECT id, user_id, expires_at FROM web_sessions WHERE token_hash = ?1 AND expires_at > ?2")?
        .query_opt(params![token_hash, now_rfc3339()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
}

/// Deletes one web session; true when it existed.
pub fn delete(conn: &Conn<'_>, id: &str) -> Result<bool> {
    Ok(conn.execute("DELETE FROM web_sessions WHERE id = ?1", [id])? == 1)
}

/// Deletes expired web sessions; returns how many.
pub fn delete_expired(conn: &Conn<'_>) -> Result<usize> {
    conn.execute(
        "DELETE FROM web_sessions WHERE expires_at <= ?1",
        [now_rfc3339()],
    )
}

/// Deletes every web session of a user.
pub fn delete_user(conn: &Conn<'_>, user_id: &str) -> Result<usize> {
    conn.execute("DELETE FROM web_sessions WHERE user_id = ?1", [user_id])
}

/// A web or MCP session as the session tools list it (never a token).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    pub id: String,
    /// `web` (admin page cookie) or `mcp` (an MCP client).
    pub kind: String,
    pub user_id: String,
    pub user_name: String,
    pub user_email: String,
    /// Web: the address the sign-in came from (not recorded for MCP sessions).
    pub ip_address: Option<String>,
    /// Web: the browser's User-Agent; MCP: the client's name and version (`clientInfo`).
    pub user_agent: Option<String>,
    /// MCP: the negotiated protocol revision.
    pub protocol_version: Option<String>,
    /// Web: the cookie expiry; MCP: last activity plus the idle timeout.
    pub expires_at: String,
    pub last_seen_at: Option<String>,
    pub created_at: String,
}

/// Web and MCP sessions together, newest first.
pub fn list_all(
    conn: &Conn<'_>,
    user_id: Option<&str>,
    kind: Option<&str>,
    include_expired: bool,
    mcp_idle_secs: u64,
    page: &Page,
) -> Result<Paged<SessionInfo>> {
    let sql = "SELECT * FROM (
            SELECT s.id, 'web' AS kind, s.user_id, u.name, u.email, s.ip_address, s.user_agent,
                   NULL AS protocol_version, s.expires_at, NULL AS last_seen_at, s.created_at
            FROM web_sessions s JOIN users u ON u.id = s.user_id
            UNION ALL
            SELECT m.id, 'mcp', m.user_id, u.name, u.email, NULL,
                   trim(coalesce(json_extract(m.client_info, '$.name'), '') || ' ' ||
                        coalesce(json_extract(m.client_info, '$.version'), '')),
                   m.protocol_version, NULL, m.last_seen_at, m.created_at
            FROM mcp_sessions m JOIN users u ON u.id = m.user_id) AS s
        WHERE (CAST(?2 AS TEXT) IS NULL OR user_id = ?2)
          AND (CAST(?3 AS TEXT) IS NULL OR kind = ?3)
          AND (?4 OR expires_at > ?5 OR last_seen_at > ?1)
          AND (CAST(?6 AS TEXT) IS NULL OR (created_at, id) < (?6, ?7))
        ORDER BY created_at DESC, id DESC LIMIT ?8";
    let idle_ms = i64::try_from(mcp_idle_secs.saturating_mul(1000)).unwrap_or(i64::MAX / 2);
    let (ac, ai) = page.after.clone().unzip();
    let rows = conn.prepare_cached(sql)?.query_map(
        params![
            // an MCP session expires `mcp_idle_secs` after it was last seen
            crate::util::ms_rfc3339(crate::util::now_ms() - idle_ms),
            user_id,
            kind,
            include_expired,
            now_rfc3339(),
            ac,
            ai,
            (page.limit + 1) as i64
        ],
        |r| {
            let last_seen_at: Option<String> = r.get(9)?;
            let expires_at = match &last_seen_at {
                Some(seen) => crate::util::rfc3339_ms(seen)
                    .map(|ms| crate::util::ms_rfc3339(ms.saturating_add(idle_ms)))
                    .unwrap_or_else(|| seen.clone()),
                None => r.get(8)?,
            };
            Ok(SessionInfo {
                id: r.get(0)?,
                kind: r.get(1)?,
                user_id: r.get(2)?,
                user_name: r.get(3)?,
                user_email: r.get(4)?,
                ip_address: r.get(5)?,
                user_agent: r.get::<_, Option<String>>(6)?.filter(|s| !s.is_empty()),
                protocol_version: r.get(7)?,
                expires_at,
                last_seen_at,
                created_at: r.get(10)?,
            })
        },
    )?;
    Ok(Paged::from_overfetch(rows, page.limit, |s| {
        (s.created_at.clone(), s.id.clone())
    }))
}
