//! Task rows of the MCP tasks extension: created before the client hears of them, read by any
//! node, moved through `working ⇄ input_required → completed | failed | cancelled` only forwards
//! (a terminal row never changes again), leased by the process that runs them, deleted after
//! their time to live. Questions a task asks (`input_requests`) and the client's answers
//! (`input_responses`) are JSON maps by key; keys answered once are kept in `answered` so they
//! are never asked or accepted again.

use super::Conn;
use super::sql::Row;
use crate::params;
use serde_json::{Map, Value};

use crate::error::Result;

/// A task as stored.
#[derive(Debug, Clone)]
pub struct TaskRow {
    pub id: String,
    pub key_id: String,
    pub server_id: String,
    pub tool: String,
    pub status: String,
    pub status_message: Option<String>,
    pub backing: Option<Value>,
    pub runner: Option<String>,
    pub lease_until: i64,
    pub result: Option<String>,
    pub error: Option<String>,
    pub input_requests: Map<String, Value>,
    pub cancel_requested: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub ttl_ms: i64,
}

impl TaskRow {
    /// True once the task can no longer change.
    pub fn is_terminal(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "failed" | "cancelled")
    }
}

const COLUMNS: &str = "id, key_id, server_id, tool, status, status_message, backing, runner, \
     lease_until, result, error, input_requests, cancel_requested, created_at, updated_at, ttl_ms";

const LIVE: &str = "status IN ('working', 'input_required')";

fn map_of(text: &str) -> Map<String, Value> {
    serde_json::from_str(text).unwrap_or_default()
}

fn from_row(r: &Row<'_>) -> Result<TaskRow> {
    let backing: Option<String> = r.get(6)?;
    let requests: String = r.get(11)?;
    Ok(TaskRow {
        id: r.get(0)?,
        key_id: r.get(1)?,
        server_id: r.get(2)?,
        tool: r.get(3)?,
        status: r.get(4)?,
        status_message: r.get(5)?,
        backing: backing.and_then(|b| serde_json::from_str(&b).ok()),
        runner: r.get(7)?,
        lease_until: r.get(8)?,
        result: r.get(9)?,
        error: r.get(10)?,
        input_requests: map_of(&requests),
        cancel_requested: r.get(12)?,
        created_at: r.get(13)?,
        updated_at: r.get(14)?,
        ttl_ms: r.get(15)?,
    })
}

/// Stores a new task.
pub fn insert(conn: &Conn<'_>, t: &TaskRow) -> Result<()> {
    conn.execute(
        "INSERT INTO mcp_tasks (id, key_id, server_id, tool, status, status_message, backing, \
         runner, lease_until, created_at, updated_at, ttl_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            t.id,
            t.key_id,
            t.server_id,
            t.tool,
            t.status,
            t.status_message,
            t.backing.as_ref().map(Value::to_string),
            t.runner,
            t.lease_until,
            t.created_at,
            t.updated_at,
            t.ttl_ms
        ],
    )?;
    Ok(())
}

/// The task `id` if `key_id` created it and it has not expired (a task that still runs does
/// not expire: a migration may take longer than the time to live).
pub fn get(conn: &Conn<'_>, id: &str, key_id: &str, now_ms: i64) -> Result<Option<TaskRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM mcp_tasks WHERE id = ?1 AND key_id = ?2 \
         AND (created_at + ttl_ms > ?3 OR {LIVE})"
    );
    conn.prepare_cached(&sql)?
        .query_opt(params![id, key_id, now_ms], from_row)
}

/// Ends a task that has not ended: `status` with its result or error. False when it had ended.
pub fn finish(
    conn: &Conn<'_>,
    id: &str,
    status: &str,
    message: Option<&str>,
    result: Option<&str>,
    error: Option<&str>,
    now_ms: i64,
) -> Result<bool> {
    let sql = format!(
        "UPDATE mcp_tasks SET status = ?2, status_message = ?3, result = ?4, error = ?5, \
         input_requests = '{{}}', updated_at = ?6 WHERE id = ?1 AND {LIVE}"
    );
    Ok(conn.execute(&sql, params![id, status, message, result, error, now_ms])? == 1)
}

/// Records what durable work the task follows.
pub fn set_backing(conn: &Conn<'_>, id: &str, backing: &Value, now_ms: i64) -> Result<()> {
    conn.execute(
        "UPDATE mcp_tasks SET backing = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, backing.to_string(), now_ms],
    )?;
    Ok(())
}

/// Sets the status message of a live task (progress).
pub fn set_message(conn: &Conn<'_>, id: &str, message: &str, now_ms: i64) -> Result<()> {
    let sql = format!(
        "UPDATE mcp_tasks SET status_message = ?2, updated_at = ?3 WHERE id = ?1 AND {LIVE}"
    );
    conn.execute(&sql, params![id, message, now_ms])?;
    Ok(())
}

/// A task's status and its question maps.
type Maps = (String, Map<String, Value>, Map<String, Value>, Vec<String>);

fn maps(conn: &Conn<'_>, id: &str) -> Result<Option<Maps>> {
    conn.query_opt(
        "SELECT status, input_requests, input_responses, answered FROM mcp_tasks WHERE id = ?1",
        [id],
        |r| {
            let (s, q, a, d): (String, String, String, String) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            Ok((
                s,
                map_of(&q),
                map_of(&a),
                serde_json::from_str(&d).unwrap_or_default(),
            ))
        },
    )
}

fn save_maps(
    conn: &Conn<'_>,
    id: &str,
    requests: &Map<String, Value>,
    responses: &Map<String, Value>,
    answered: &[String],
    now_ms: i64,
) -> Result<()> {
    let status = if requests.is_empty() {
        "working"
    } else {
        "input_required"
    };
    let sql = format!(
        "UPDATE mcp_tasks SET status = ?2, input_requests = ?3, input_responses = ?4, answered = ?5, \
         updated_at = ?6 WHERE id = ?1 AND {LIVE}"
    );
    conn.execute(
        &sql,
        params![
            id,
            status,
            Value::Object(requests.clone()).to_string(),
            Value::Object(responses.clone()).to_string(),
            serde_json::to_string(answered).expect("json"),
            now_ms
        ],
    )?;
    Ok(())
}

/// Adds a question under `key` (the task is then `input_required`). False when the key was
/// used before in this task, or the task has ended.
pub fn ask(conn: &Conn<'_>, id: &str, key: &str, request: &Value, now_ms: i64) -> Result<bool> {
    let Some((status, mut q, a, done)) = maps(conn, id)? else {
        return Ok(false);
    };
    if !matches!(status.as_str(), "working" | "input_required")
        || q.contains_key(key)
        || done.iter().any(|k| k == key)
    {
        return Ok(false);
    }
    q.insert(key.to_string(), request.clone());
    save_maps(conn, id, &q, &a, &done, now_ms)?;
    Ok(true)
}

/// Accepts the client's answers to questions still open (others are ignored); the task goes
/// back to `working` once none is open. Returns the keys accepted.
pub fn answer(
    conn: &Conn<'_>,
    id: &str,
    responses: &Map<String, Value>,
    now_ms: i64,
) -> Result<Vec<String>> {
    let Some((_, mut q, mut a, mut done)) = maps(conn, id)? else {
        return Ok(Vec::new());
    };
    let mut taken = Vec::new();
    for (k, v) in responses {
        if q.remove(k).is_some() {
            a.insert(k.clone(), v.clone());
            done.push(k.clone());
            taken.push(k.clone());
        }
    }
    if !taken.is_empty() {
        save_maps(conn, id, &q, &a, &done, now_ms)?;
    }
    Ok(taken)
}

/// Takes the answer to `key`, if the client has sent it (it is handed out once).
pub fn take_answer(conn: &Conn<'_>, id: &str, key: &str, now_ms: i64) -> Result<Option<Value>> {
    let Some((_, q, mut a, done)) = maps(conn, id)? else {
        return Ok(None);
    };
    let Some(v) = a.remove(key) else {
        return Ok(None);
    };
    save_maps(conn, id, &q, &a, &done, now_ms)?;
    Ok(Some(v))
}

/// Records a cancellation request; false for an unknown task.
pub fn request_cancel(conn: &Conn<'_>, id: &str) -> Result<bool> {
    Ok(conn.execute(
        "UPDATE mcp_tasks SET cancel_requested = 1 WHERE id = ?1",
        [id],
    )? == 1)
}

/// Live tasks of `runner` whose cancellation was asked (perhaps on another node).
pub fn cancel_requested(conn: &Conn<'_>, runner: &str) -> Result<Vec<String>> {
    let sql =
        format!("SELECT id FROM mcp_tasks WHERE runner = ?1 AND cancel_requested = 1 AND {LIVE}");
    let mut stmt = conn.prepare_cached(&sql)?;
    let ids = stmt.query_map([runner], |r| r.get(0))?;
    Ok(ids)
}

/// Renews the lease of every live task `runner` runs.
pub fn renew(conn: &Conn<'_>, runner: &str, until_ms: i64) -> Result<usize> {
    let sql = format!("UPDATE mcp_tasks SET lease_until = ?2 WHERE runner = ?1 AND {LIVE}");
    conn.execute(&sql, params![runner, until_ms])
}

/// Deletes ended tasks whose time to live has passed; returns how many.
pub fn delete_expired(conn: &Conn<'_>, now_ms: i64) -> Result<usize> {
    let sql = format!("DELETE FROM mcp_tasks WHERE created_at + ttl_ms <= ?1 AND NOT {LIVE}");
    conn.execute(&sql, [now_ms])
}
