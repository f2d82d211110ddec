//! The `nodes` table: every `trex serve` sharing this store, with its heartbeat (schema v8).

use crate::params;

use super::Conn;
use crate::error::Result;
use crate::util::now_rfc3339;

/// One node row.
#[derive(Debug, Clone)]
pub struct Node {
    pub id: String,
    pub name: String,
    pub listen: String,
    pub version: String,
    pub pid: Option<i64>,
    pub data_node: bool,
    pub started_at: String,
    pub heartbeat_ms: i64,
    pub stopped_at: Option<String>,
    /// Its services as of its last heartbeat (JSON), when it published them.
    pub services: Option<String>,
}

/// Registers (or re-registers) a node.
pub fn upsert(conn: &Conn<'_>, n: &Node) -> Result<()> {
    conn.execute(
        "INSERT INTO nodes (id, name, listen, version, pid, data_node, started_at, heartbeat_ms, stopped_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, listen = excluded.listen,
           version = excluded.version, pid = excluded.pid, data_node = excluded.data_node,
           started_at = excluded.started_at, heartbeat_ms = excluded.heartbeat_ms, stopped_at = NULL",
        params![n.id, n.name, n.listen, n.version, n.pid, n.data_node, n.started_at, n.heartbeat_ms],
    )?;
    Ok(())
}

/// Records a heartbeat with the node's services (JSON).
pub fn heartbeat(conn: &Conn<'_>, id: &str, now_ms: i64, services: &str) -> Result<()> {
    conn.execute(
        "UPDATE nodes SET heartbeat_ms = ?2, services = ?3 WHERE id = ?1",
        params![id, now_ms, services],
    )?;
    Ok(())
}

/// Marks a node stopped (a clean shutdown).
pub fn stopped(conn: &Conn<'_>, id: &str) -> Result<()> {
    conn.execute(
        "UPDATE nodes SET stopped_at = ?2 WHERE id = ?1",
        params![id, now_rfc3339()],
    )?;
    Ok(())
}

/// Every node, newest start first.
pub fn list(conn: &Conn<'_>) -> Result<Vec<Node>> {
    let rows = conn
        .prepare_cached(
            "SELECT id, name, listen, version, pid, data_node, started_at, heartbeat_ms, stopped_at,
                    services
             FROM nodes ORDER BY started_at DESC, id",
        )?
        .query_map([], |r| {
            Ok(Node {
                id: r.get(0)?,
                name: r.get(1)?,
                listen: r.get(2)?,
                version: r.get(3)?,
                pid: r.get(4)?,
                data_node: r.get(5)?,
                started_at: r.get(6)?,
                heartbeat_ms: r.get(7)?,
                stopped_at: r.get(8)?,
                services: r.get(9)?,
            })
        })?;
    Ok(rows)
}
