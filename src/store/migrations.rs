//! Migration definitions, their runs and each run's per-target rows (schema version 7).

use super::sql::Row;
use crate::params;

use super::Conn;
use crate::error::Result;
use crate::util::now_rfc3339;

/// One version of a definition.
#[derive(Debug, Clone)]
pub struct Definition {
    pub id: String,
    pub version: i64,
    pub description: Option<String>,
    /// Normalized JSON.
    pub body: String,
    pub digest: String,
    pub status: String,
    pub created_by: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

const DEF_COLUMNS: &str =
    "id, version, description, body, digest, status, created_by, created_at, updated_at";

fn def_row(r: &Row<'_>) -> Result<Definition> {
    Ok(Definition {
        id: r.get(0)?,
        version: r.get(1)?,
        description: r.get(2)?,
        body: r.get(3)?,
        digest: r.get(4)?,
        status: r.get(5)?,
        created_by: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

/// The latest version of definition `id`.
pub fn latest(conn: &Conn<'_>, id: &str) -> Result<Option<Definition>> {
    conn
        .prepare_cached(&format!(
            "SELECT {DEF_COLUMNS} FROM migration_definitions WHERE id = ?1 ORDER BY version DESC LIMIT 1"
        ))?
        .query_opt([id], def_row)
}

/// Every version of definition `id`, oldest first.
pub fn versions(conn: &Conn<'_>, id: &str) -> Result<Vec<Definition>> {
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {DEF_COLUMNS} FROM migration_definitions WHERE id = ?1 ORDER BY version"
        ))?
        .query_map([id], def_row)?;
    Ok(rows)
}

/// Stores a new version of a definition.
pub fn insert(
    conn: &Conn<'_>,
    id: &str,
    version: i64,
    description: Option<&str>,
    body: &str,
    digest: &str,
    created_by: Option<&str>,
) -> Result<Definition> {
    let now = now_rfc3339();
    conn.execute(
        "INSERT INTO migration_definitions (id, version, description, body, digest, status, created_by, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7, ?7)",
        params![id, version, description, body, digest, created_by, now],
    )?;
    Ok(latest(conn, id)?.expect("just inserted"))
}

/// Sets the status of one version.
pub fn set_status(conn: &Conn<'_>, id: &str, version: i64, status: &str) -> Result<()> {
    conn.execute(
        "UPDATE migration_definitions SET status = ?3, updated_at = ?4 WHERE id = ?1 AND version = ?2",
        params![id, version, status, now_rfc3339()],
    )?;
    Ok(())
}

/// Latest versions, newest first, filtered, at most `limit + 1` after the keyset `after`
/// (`(updated_at, id)`).
pub fn list(
    conn: &Conn<'_>,
    updated_since: Option<&str>,
    status: Option<&str>,
    touching: Option<&str>,
    after: Option<(String, String)>,
    limit: usize,
) -> Result<Vec<Definition>> {
    let (ac, ai) = after.unzip();
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {DEF_COLUMNS} FROM migration_definitions d
             WHERE version = (SELECT max(version) FROM migration_definitions x WHERE x.id = d.id)
               AND (CAST(?1 AS TEXT) IS NULL OR updated_at >= ?1)
               AND (CAST(?2 AS TEXT) IS NULL OR status = ?2)
               AND (CAST(?3 AS TEXT) IS NULL OR EXISTS (SELECT 1 FROM json_each(json_extract(d.body, '$.interlays')) i
                                          WHERE json_extract(i.value, '$.endpoint') = ?3))
               AND (CAST(?4 AS TEXT) IS NULL OR (updated_at, id) < (?4, ?5))
             ORDER BY updated_at DESC, id DESC LIMIT ?6"
        ))?
        .query_map(
            params![updated_since, status, touching, ac, ai, limit as i64 + 1],
            def_row,
        )?;
    Ok(rows)
}

/// One run.
#[derive(Debug, Clone)]
pub struct Run {
    pub id: String,
    pub migration_id: String,
    pub version: i64,
    pub mode: String,
    pub state: String,
    pub job_id: Option<String>,
    pub error: Option<String>,
    pub created_by: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

const RUN_COLUMNS: &str = "id, migration_id, version, mode, state, job_id, error, created_by, created_at, started_at, finished_at";

fn run_row(r: &Row<'_>) -> Result<Run> {
    Ok(Run {
        id: r.get(0)?,
        migration_id: r.get(1)?,
        version: r.get(2)?,
        mode: r.get(3)?,
        state: r.get(4)?,
        job_id: r.get(5)?,
        error: r.get(6)?,
        created_by: r.get(7)?,
        created_at: r.get(8)?,
        started_at: r.get(9)?,
        finished_at: r.get(10)?,
    })
}

/// One run's target row.
#[derive(Debug, Clone)]
pub struct RunTarget {
    pub database_id: String,
    pub position: i64,
    pub state: String,
    pub schema_digest: Option<String>,
    /// JSON.
    pub report: Option<String>,
    pub error: Option<String>,
    pub updated_at: String,
}

/// Creates a run and its target rows (state `pending`).
pub fn insert_run(conn: &Conn<'_>, run: &Run, targets: &[String]) -> Result<()> {
    let now = now_rfc3339();
    conn.execute(
        &format!("INSERT INTO migration_runs ({RUN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, ?7, ?8, NULL, NULL)"),
        params![run.id, run.migration_id, run.version, run.mode, run.state, run.job_id, run.created_by, now],
    )?;
    let mut st = conn.prepare_cached(
        "INSERT INTO migration_run_targets (run_id, database_id, position, state, updated_at) VALUES (?1, ?2, ?3, 'pending', ?4)",
    )?;
    for (i, t) in targets.iter().enumerate() {
        st.execute(params![run.id, t, i as i64, now])?;
    }
    Ok(())
}

/// Sets the job of a run.
pub fn set_job(conn: &Conn<'_>, run_id: &str, job_id: &str) -> Result<()> {
    conn.execute(
        "UPDATE migration_runs SET job_id = ?2 WHERE id = ?1",
        params![run_id, job_id],
    )?;
    Ok(())
}

/// Moves a run to `state` (with its error, if any); `running` sets `started_at`, an end state
/// `finished_at`.
pub fn set_run_state(
    conn: &Conn<'_>,
    run_id: &str,
    state: &str,
    error: Option<&str>,
) -> Result<()> {
    let now = now_rfc3339();
    let ended = matches!(state, "completed" | "failed" | "rolled_back" | "cancelled");
    conn.execute(
        "UPDATE migration_runs SET state = ?2, error = COALESCE(?3, error),
                started_at = CASE WHEN ?2 = 'running' AND started_at IS NULL THEN ?4 ELSE started_at END,
                finished_at = CASE WHEN ?5 THEN ?4 ELSE finished_at END
         WHERE id = ?1",
        params![run_id, state, error, now, ended],
    )?;
    Ok(())
}

/// Records one target's state, schema digest and report.
pub fn set_target(
    conn: &Conn<'_>,
    run_id: &str,
    database_id: &str,
    state: &str,
    schema_digest: Option<&str>,
    report: Option<&str>,
    error: Option<&str>,
) -> Result<()> {
    conn.execute(
        "UPDATE migration_run_targets SET state = ?3, schema_digest = COALESCE(?4, schema_digest),
                report = COALESCE(?5, report), error = ?6, updated_at = ?7
         WHERE run_id = ?1 AND database_id = ?2",
        params![
            run_id,
            database_id,
            state,
            schema_digest,
            report,
            error,
            now_rfc3339()
        ],
    )?;
    Ok(())
}

/// One run.
pub fn run(conn: &Conn<'_>, run_id: &str) -> Result<Option<Run>> {
    conn.prepare_cached(&format!(
        "SELECT {RUN_COLUMNS} FROM migration_runs WHERE id = ?1"
    ))?
    .query_opt([run_id], run_row)
}

/// The runs of a definition, newest first.
pub fn runs_of(conn: &Conn<'_>, migration_id: &str) -> Result<Vec<Run>> {
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM migration_runs WHERE migration_id = ?1 ORDER BY created_at DESC, id DESC"
        ))?
        .query_map([migration_id], run_row)?;
    Ok(rows)
}

/// The target rows of a run, in run order.
pub fn targets(conn: &Conn<'_>, run_id: &str) -> Result<Vec<RunTarget>> {
    let rows = conn
        .prepare_cached(
            "SELECT database_id, position, state, schema_digest, report, error, updated_at
             FROM migration_run_targets WHERE run_id = ?1 ORDER BY position",
        )?
        .query_map([run_id], |r| {
            Ok(RunTarget {
                database_id: r.get(0)?,
                position: r.get(1)?,
                state: r.get(2)?,
                schema_digest: r.get(3)?,
                report: r.get(4)?,
                error: r.get(5)?,
                updated_at: r.get(6)?,
            })
        })?;
    Ok(rows)
}

/// The newest test run of version `version` that completed, if any.
pub fn passed_test(conn: &Conn<'_>, migration_id: &str, version: i64) -> Result<Option<Run>> {
    conn.prepare_cached(&format!(
        "SELECT {RUN_COLUMNS} FROM migration_runs
             WHERE migration_id = ?1 AND version = ?2 AND mode = 'test' AND state = 'completed'
             ORDER BY finished_at DESC LIMIT 1"
    ))?
    .query_opt(params![migration_id, version], run_row)
}

/// True while a run of definition `migration_id` is pending or running.
pub fn busy(conn: &Conn<'_>, migration_id: &str) -> Result<Option<String>> {
    conn
        .prepare_cached(
            "SELECT id FROM migration_runs WHERE migration_id = ?1 AND state IN ('pending', 'running', 'rolling_back') LIMIT 1",
        )?
        .query_opt([migration_id], |r| r.get(0))
}

/// An active run (pending, running or rolling back) of any definition that has one of
/// `databases` as a target: `(run id, database)`.
pub fn busy_targets(conn: &Conn<'_>, databases: &[String]) -> Result<Option<(String, String)>> {
    let ids = serde_json::to_string(databases).expect("json");
    conn
        .prepare_cached(
            "SELECT r.id, t.database_id FROM migration_runs r JOIN migration_run_targets t ON t.run_id = r.id
             WHERE r.state IN ('pending', 'running', 'rolling_back')
               AND t.database_id IN (SELECT value FROM json_each(?1)) LIMIT 1",
        )?
        .query_opt([ids], |r| Ok((r.get(0)?, r.get(1)?)))
}
