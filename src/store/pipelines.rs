//! The `pipelines` table (schema v10): each ETL/CDC pipeline's settings, whether it is wanted
//! running, which node runs it (`node`; on a shared store another node [`claim`]s it when
//! that node dies), and its last known state and error. Checkpoints live with the replica
//! (trexdb, node-local), not here.

use crate::params;

use super::Conn;
use super::sql::Row;
use crate::error::{Error, Result};

/// One pipeline row.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub id: String,
    pub name: String,
    pub database_id: String,
    pub credential_id: Option<String>,
    pub mode: String,
    pub publication: Option<String>,
    pub schema_name: String,
    /// JSON array of table names, or `None` for all.
    pub tables: Option<String>,
    pub slot: String,
    pub batch_size: i64,
    pub batch_timeout_ms: i64,
    pub retry_delay_ms: i64,
    pub retry_max_attempts: i64,
    /// `running` or `stopped`.
    pub desired: String,
    pub state: String,
    pub error: Option<String>,
    pub node: Option<String>,
    pub created_at: String,
    pub created_by: Option<String>,
    pub updated_at: String,
}

const COLUMNS: &str = "id, name, database_id, credential_id, mode, publication, schema_name, tables, slot, \
     batch_size, batch_timeout_ms, retry_delay_ms, retry_max_attempts, desired, state, error, node, \
     created_at, created_by, updated_at";

fn from_row(r: &Row<'_>) -> Result<Pipeline> {
    Ok(Pipeline {
        id: r.get(0)?,
        name: r.get(1)?,
        database_id: r.get(2)?,
        credential_id: r.get(3)?,
        mode: r.get(4)?,
        publication: r.get(5)?,
        schema_name: r.get(6)?,
        tables: r.get(7)?,
        slot: r.get(8)?,
        batch_size: r.get(9)?,
        batch_timeout_ms: r.get(10)?,
        retry_delay_ms: r.get(11)?,
        retry_max_attempts: r.get(12)?,
        desired: r.get(13)?,
        state: r.get(14)?,
        error: r.get(15)?,
        node: r.get(16)?,
        created_at: r.get(17)?,
        created_by: r.get(18)?,
        updated_at: r.get(19)?,
    })
}

/// Records a new pipeline; a name in use is a conflict.
pub fn insert(conn: &Conn<'_>, p: &Pipeline) -> Result<()> {
    conn
        .execute(
            &format!(
                "INSERT INTO pipelines ({COLUMNS}) VALUES
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)"
            ),
            params![
                p.id,
                p.name,
                p.database_id,
                p.credential_id,
                p.mode,
                p.publication,
                p.schema_name,
                p.tables,
                p.slot,
                p.batch_size,
                p.batch_timeout_ms,
                p.retry_delay_ms,
                p.retry_max_attempts,
                p.desired,
                p.state,
                p.error,
                p.node,
                p.created_at,
                p.created_by,
                p.updated_at
            ],
        )
        .map_err(|e| {
            if super::sql::is_constraint_violation(&e) {
                Error::Conflict(format!("Pipeline '{}' already exists", p.name))
            } else {
                e
            }
        })?;
    Ok(())
}

/// The pipeline named `name`.
pub fn by_name(conn: &Conn<'_>, name: &str) -> Result<Option<Pipeline>> {
    conn.query_opt(
        &format!("SELECT {COLUMNS} FROM pipelines WHERE name = ?1"),
        [name],
        from_row,
    )
}

/// Every pipeline, by name.
pub fn list(conn: &Conn<'_>) -> Result<Vec<Pipeline>> {
    let sql = format!("SELECT {COLUMNS} FROM pipelines ORDER BY name");
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map([], from_row)?;
    Ok(rows)
}

/// The names of the pipelines that read database `database_id`.
pub fn of_database(conn: &Conn<'_>, database_id: &str) -> Result<Vec<String>> {
    let mut st = conn.prepare("SELECT name FROM pipelines WHERE database_id = ?1 ORDER BY name")?;
    let rows = st.query_map([database_id], |r| r.get(0))?;
    Ok(rows)
}

/// Marks a pipeline wanted stopped, and stopped unless it is in `error` (whose reason stays).
pub fn mark_stopped(conn: &Conn<'_>, id: &str) -> Result<()> {
    conn.execute(
        "UPDATE pipelines SET desired = 'stopped',
                state = CASE WHEN state = 'error' THEN state ELSE 'stopped' END, updated_at = ?2
         WHERE id = ?1",
        params![id, crate::util::now_rfc3339()],
    )?;
    Ok(())
}

/// Sets what is wanted of a pipeline and its settings that may change on a restart.
pub fn set_desired(conn: &Conn<'_>, p: &Pipeline) -> Result<()> {
    conn.execute(
        "UPDATE pipelines SET desired = ?2, state = ?3, error = ?4, node = ?5, batch_size = ?6,
         batch_timeout_ms = ?7, retry_delay_ms = ?8, retry_max_attempts = ?9, credential_id = ?10,
         updated_at = ?11 WHERE id = ?1",
        params![
            p.id,
            p.desired,
            p.state,
            p.error,
            p.node,
            p.batch_size,
            p.batch_timeout_ms,
            p.retry_delay_ms,
            p.retry_max_attempts,
            p.credential_id,
            crate::util::now_rfc3339()
        ],
    )?;
    Ok(())
}

/// Records how a pipeline's run on node `me` ended (`desired` becomes `stopped` when it ended
/// by itself). A row another node has taken over since is left alone (`me` empty: any row).
pub fn ended(conn: &Conn<'_>, id: &str, state: &str, error: Option<&str>, me: &str) -> Result<()> {
    conn.execute(
        "UPDATE pipelines SET state = ?2, error = ?3, desired = 'stopped', updated_at = ?4
         WHERE id = ?1 AND (?5 = '' OR COALESCE(node, '') IN ('', ?5))",
        params![id, state, error, crate::util::now_rfc3339(), me],
    )?;
    Ok(())
}

/// Records the state pipeline `id`'s run on node `me` is in (`snapshotting`, `streaming`, a
/// retry's error), so the other nodes of a shared store list it as it is. Only a row `me` runs
/// and that is still wanted running is written.
pub fn progressed(
    conn: &Conn<'_>,
    id: &str,
    state: &str,
    error: Option<&str>,
    me: &str,
) -> Result<()> {
    conn.execute(
        "UPDATE pipelines SET state = ?2, error = ?3, updated_at = ?4
         WHERE id = ?1 AND node = ?5 AND desired = 'running'",
        params![id, state, error, crate::util::now_rfc3339(), me],
    )?;
    Ok(())
}

/// Whether pipeline `id` is still wanted running on node `me` (a shared store's check before
/// each start or retry of a run: a node cut off from the store, or whose pipeline another node
/// took over, does not go on).
pub fn runs_on(conn: &Conn<'_>, id: &str, me: &str) -> Result<bool> {
    Ok(conn
        .query_opt(
            "SELECT 1 FROM pipelines WHERE id = ?1 AND desired = 'running' AND node = ?2",
            params![id, me],
            |r| r.get::<_, i64>(0),
        )?
        .is_some())
}

/// Takes pipeline `id` over for node `me` from node `from` (`None`: no node), if it is still
/// wanted running and still `from`'s: one conditional write, so of several nodes trying at
/// once exactly one gets it. True if this call took it.
pub fn claim(conn: &Conn<'_>, id: &str, from: Option<&str>, me: &str) -> Result<bool> {
    let n = conn.execute(
        "UPDATE pipelines SET node = ?3, state = 'starting', error = NULL, updated_at = ?4
         WHERE id = ?1 AND desired = 'running' AND COALESCE(node, '') = ?2",
        params![id, from.unwrap_or(""), me, crate::util::now_rfc3339()],
    )?;
    Ok(n == 1)
}

/// Deletes a pipeline row.
pub fn delete(conn: &Conn<'_>, id: &str) -> Result<bool> {
    Ok(conn.execute("DELETE FROM pipelines WHERE id = ?1", [id])? == 1)
}
