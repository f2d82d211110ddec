//! Job rows: enqueue, claim one with a single atomic statement, renew the lease, record
//! progress, finish, cancel, and recover jobs whose lease ran out. Times of leases are ms since
//! the epoch, so comparisons are plain integers.

use super::Conn;
use super::sql::Row;
use crate::params;
use schemars::JsonSchema;
use serde::Serialize;

use crate::error::Result;
use crate::util::now_rfc3339;

/// A job as tools and the CLI show it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: String,
    pub kind: String,
    pub payload: serde_json::Value,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub progress: Option<f64>,
    pub progress_total: Option<f64>,
    pub progress_message: Option<String>,
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    pub cancel_requested: bool,
    pub lease_owner: Option<String>,
    pub created_by: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

const COLUMNS: &str = "id, kind, payload, state, attempts, max_attempts, progress, progress_total, \
     progress_message, result, error, cancel_requested, lease_owner, created_by, created_at, \
     started_at, finished_at";

fn json(s: Option<String>) -> Option<serde_json::Value> {
    s.map(|t| serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t)))
}

fn from_row(r: &Row<'_>) -> Result<Job> {
    Ok(Job {
        id: r.get(0)?,
        kind: r.get(1)?,
        payload: json(r.get(2)?).unwrap_or_default(),
        state: r.get(3)?,
        attempts: r.get(4)?,
        max_attempts: r.get(5)?,
        progress: r.get(6)?,
        progress_total: r.get(7)?,
        progress_message: r.get(8)?,
        result: json(r.get(9)?),
        error: r.get(10)?,
        cancel_requested: r.get(11)?,
        lease_owner: r.get(12)?,
        created_by: r.get(13)?,
        created_at: r.get(14)?,
        started_at: r.get(15)?,
        finished_at: r.get(16)?,
    })
}

/// Adds a queued job; returns its id.
pub fn enqueue(
    conn: &Conn<'_>,
    kind: &str,
    payload: &str,
    max_attempts: u32,
    created_by: Option<&str>,
) -> Result<String> {
    let id = uuid::Uuid::new_v4().to_string();
    let now = now_rfc3339();
    conn.prepare_cached(
        "INSERT INTO jobs (id, kind, payload, max_attempts, created_by, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
    )?
    .execute(params![
        id,
        kind,
        payload,
        max_attempts.max(1),
        created_by,
        now
    ])?;
    Ok(id)
}

/// The claim: the oldest queued job of the kinds, in one statement.
const CLAIM: &str = "UPDATE jobs SET state = 'running', lease_owner = ?1, lease_until = ?2,
        heartbeat_at = ?3, attempts = attempts + 1, started_at = coalesce(started_at, ?4),
        updated_at = ?4
     WHERE id = (SELECT id FROM jobs WHERE state = 'queued'
                   AND kind IN (SELECT value FROM json_each(?5))
                 ORDER BY created_at, id LIMIT 1)
       AND state = 'queued'
     RETURNING id, kind, payload, attempts";

/// [`CLAIM`] on PostgreSQL: a candidate another node holds locked is skipped.
const CLAIM_SKIP_LOCKED: &str =
    "UPDATE jobs SET state = 'running', lease_owner = ?1, lease_until = ?2,
        heartbeat_at = ?3, attempts = attempts + 1, started_at = coalesce(started_at, ?4),
        updated_at = ?4
     WHERE id = (SELECT id FROM jobs WHERE state = 'queued'
                   AND kind IN (SELECT value FROM json_each(?5))
                 ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
       AND state = 'queued'
     RETURNING id, kind, payload, attempts";

/// A job a worker has claimed.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub kind: String,
    pub payload: String,
    pub attempts: i64,
}

/// Claims the oldest queued job of one of `kinds` for `owner` until `lease_until` (ms), in one
/// statement, so two runtimes on one store can never claim the same job.
pub fn claim(
    conn: &Conn<'_>,
    owner: &str,
    kinds: &[String],
    now_ms: i64,
    lease_until: i64,
) -> Result<Option<Claimed>> {
    let kinds = serde_json::to_string(kinds).expect("json");
    // on a shared PostgreSQL store, nodes claiming at once skip each other's candidate row
    // instead of waiting on its lock (SQLite has one writer at a time anyway)
    let sql = match conn.backend() {
        super::Backend::Sqlite => CLAIM,
        super::Backend::Postgres => CLAIM_SKIP_LOCKED,
    };
    conn.prepare_cached(sql)?.query_opt(
        params![owner, lease_until, now_ms, now_rfc3339(), kinds],
        |r| {
            Ok(Claimed {
                id: r.get(0)?,
                kind: r.get(1)?,
                payload: r.get(2)?,
                attempts: r.get(3)?,
            })
        },
    )
}

/// Renews the lease of a running job held by `owner`; returns whether cancellation was asked
/// for, or `None` when the job is no longer this owner's (recovered by someone else).
pub fn renew(
    conn: &Conn<'_>,
    id: &str,
    owner: &str,
    now_ms: i64,
    lease_until: i64,
) -> Result<Option<bool>> {
    conn.prepare_cached(
        "UPDATE jobs SET lease_until = ?3, heartbeat_at = ?4
             WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'
             RETURNING cancel_requested",
    )?
    .query_opt(params![id, owner, lease_until, now_ms], |r| r.get(0))
}

/// Records progress of a running job.
pub fn set_progress(
    conn: &Conn<'_>,
    id: &str,
    progress: f64,
    total: Option<f64>,
    message: Option<&str>,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE jobs SET progress = ?2, progress_total = ?3, progress_message = ?4, updated_at = ?5
         WHERE id = ?1 AND state = 'running'",
    )?
    .execute(params![id, progress, total, message, now_rfc3339()])?;
    Ok(())
}

/// Ends a running job held by `owner` in `state` (`succeeded`, `failed`, `cancelled`, or
/// `queued` to run it again); false when it was no longer this owner's.
pub fn finish(
    conn: &Conn<'_>,
    id: &str,
    owner: &str,
    state: &str,
    result: Option<&str>,
    error: Option<&str>,
) -> Result<bool> {
    let now = now_rfc3339();
    let finished = (state != "queued").then_some(now.as_str());
    Ok(conn
        .prepare_cached(
            "UPDATE jobs SET state = ?3, result = ?4, error = ?5, lease_owner = NULL, lease_until = NULL,
                    finished_at = ?6, updated_at = ?7
             WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'",
        )?
        .execute(params![id, owner, state, result, error, finished, now])?
        == 1)
}

/// Asks a job to stop: a queued one is cancelled at once, a running one at its next safe point.
/// Returns the job's state after the request, or `None` for an unknown job.
pub fn request_cancel(conn: &Conn<'_>, id: &str) -> Result<Option<String>> {
    let now = now_rfc3339();
    conn.prepare_cached(
        "UPDATE jobs SET state = 'cancelled', error = 'cancelled before it started', finished_at = ?2,
                updated_at = ?2
         WHERE id = ?1 AND state = 'queued'",
    )?
    .execute(params![id, now])?;
    conn.prepare_cached(
        "UPDATE jobs SET cancel_requested = 1, updated_at = ?2 WHERE id = ?1 AND state = 'running'",
    )?
    .execute(params![id, now])?;
    conn.query_opt("SELECT state FROM jobs WHERE id = ?1", [id], |r| r.get(0))
}

/// Recovers running jobs whose lease ran out before `now_ms` (their worker's process died):
/// queued again while attempts remain and the kind may be retried, else failed with a reason
/// that says so. Returns how many.
pub fn recover(conn: &Conn<'_>, now_ms: i64, retryable: &[String]) -> Result<usize> {
    let retryable = serde_json::to_string(retryable).expect("json");
    let now = now_rfc3339();
    conn
        .prepare_cached(
            "UPDATE jobs SET
                state = CASE WHEN attempts < max_attempts
                              AND kind IN (SELECT value FROM json_each(?2)) THEN 'queued' ELSE 'failed' END,
                error = 'interrupted: the process running it stopped before it finished (its lease expired)',
                finished_at = CASE WHEN attempts < max_attempts
                              AND kind IN (SELECT value FROM json_each(?2)) THEN NULL ELSE ?3 END,
                lease_owner = NULL, lease_until = NULL, updated_at = ?3
             WHERE state = 'running' AND lease_until < ?1",
        )?
        .execute(params![now_ms, retryable, now])
}

/// One job by id.
pub fn get(conn: &Conn<'_>, id: &str) -> Result<Option<Job>> {
    let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1");
    conn.prepare_cached(&sql)?.query_opt([id], from_row)
}

/// Jobs per state (for status and metrics).
pub fn counts(conn: &Conn<'_>) -> Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare_cached("SELECT state, count(*) FROM jobs GROUP BY state")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows)
}
