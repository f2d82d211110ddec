//! The SQLite work of a definition run, on blocking threads: rehearsing SQL on an in-memory
//! copy of a target's schema (define-time checking), scratch copies (`VACUUM INTO`), applying
//! `up` statement by statement inside one transaction with the `apis` checked before it commits,
//! and putting a target back from its pre-run copy with SQLite's online backup (readers see the
//! old or the new file, never half of one).

use std::path::Path;
use std::time::Duration;

use rusqlite::fallible_iterator::FallibleIterator as _;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Value, json};

use super::definition::Api;
use super::schema::{self, Schema};

const BUSY: Duration = Duration::from_secs(30);

/// What applying SQL did.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    pub statements: usize,
    pub rows_affected: u64,
}

/// One `apis` entry's result on a target.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiResult {
    pub id: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The first rows (at most 100), for shadow comparisons.
    #[serde(skip)]
    pub sample: Vec<Vec<Value>>,
}

fn open_ro(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    c.busy_timeout(BUSY)?;
    Ok(c)
}

/// Opens a target for writing.
pub fn open_rw(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(BUSY)?;
    Ok(c)
}

/// The schema of the database at `path` (empty when there is no file yet).
pub fn schema_of(path: &Path) -> rusqlite::Result<Schema> {
    if !path.exists() {
        return Ok(Schema::default());
    }
    schema::sqlite(&open_ro(path)?)
}

/// Runs `sql` on an in-memory database holding the schema of `path`, in a transaction that is
/// rolled back: SQLite's own verdict on whether the SQL runs against that schema.
pub fn rehearse(path: &Path, sql: &str) -> Result<(), String> {
    let mem = Connection::open_in_memory().map_err(|e| e.to_string())?;
    if path.exists() {
        let src = open_ro(path).map_err(|e| e.to_string())?;
        let ddl: Vec<String> = src
            .prepare("SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 ELSE 2 END, rowid")
            .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| e.to_string())?;
        for d in ddl {
            mem.execute_batch(&d).map_err(|e| e.to_string())?;
        }
    }
    mem.execute_batch("BEGIN").map_err(|e| e.to_string())?;
    let r = mem.execute_batch(sql).map_err(|e| e.to_string());
    let _ = mem.execute_batch("ROLLBACK");
    r
}

/// Copies the database at `from` to a new file `to` (`VACUUM INTO`: a consistent snapshot taken
/// while others may write); an empty database when `from` does not exist yet.
pub fn copy(from: &Path, to: &Path) -> rusqlite::Result<()> {
    if let Some(d) = to.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    let _ = std::fs::remove_file(to);
    if !from.exists() {
        Connection::open(to)?.execute_batch("VACUUM")?;
        return Ok(());
    }
    open_ro(from)?.execute("VACUUM INTO ?1", [to.to_string_lossy()])?;
    Ok(())
}

/// Puts the database at `to` back to the content of `from` with the online backup API, in one
/// step: a reader sees the old or the new content.
pub fn restore(from: &Path, to: &Path) -> rusqlite::Result<()> {
    let mut dst = open_rw(to)?;
    dst.restore(
        rusqlite::MAIN_DB,
        from,
        None::<fn(rusqlite::backup::Progress)>,
    )
}

/// Applies `sql` statement by statement on `c` (inside the caller's transaction), calling
/// `each(n)` after statement n.
pub fn apply(c: &Connection, sql: &str, mut each: impl FnMut(usize)) -> rusqlite::Result<Applied> {
    let mut out = Applied::default();
    let mut batch = rusqlite::Batch::new(c, sql);
    while let Some(mut st) = batch.next()? {
        let before = c.total_changes();
        let mut rows = st.raw_query();
        while rows.next()?.is_some() {}
        out.statements += 1;
        out.rows_affected += c.total_changes().saturating_sub(before);
        each(out.statements);
    }
    Ok(out)
}

fn json_of(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => json!(i),
        ValueRef::Real(f) => json!(f),
        ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
        ValueRef::Blob(b) => json!(hex::encode(b)),
    }
}

fn bind(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Null => rusqlite::types::Value::Null,
        Value::Bool(b) => rusqlite::types::Value::Integer(*b as i64),
        Value::Number(n) => match n.as_i64() {
            Some(i) => rusqlite::types::Value::Integer(i),
            None => rusqlite::types::Value::Real(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => rusqlite::types::Value::Text(s.clone()),
        other => rusqlite::types::Value::Text(other.to_string()),
    }
}

/// Runs every api on `c`; each that fails to prepare or run is `ok: false` with the error.
pub fn check_apis(c: &Connection, apis: &[Api]) -> Vec<ApiResult> {
    apis.iter()
        .map(|a| {
            let run = || -> rusqlite::Result<(usize, Vec<Vec<Value>>)> {
                let mut st = c.prepare(&a.query)?;
                let n = st.column_count();
                let params: Vec<rusqlite::types::Value> = a.parameters.iter().map(bind).collect();
                let mut rows = st.query(rusqlite::params_from_iter(params))?;
                let (mut count, mut sample) = (0, Vec::new());
                while let Some(r) = rows.next()? {
                    if sample.len() < 100 {
                        sample.push(
                            (0..n)
                                .map(|i| r.get_ref(i).map(json_of).unwrap_or(Value::Null))
                                .collect(),
                        );
                    }
                    count += 1;
                }
                Ok((count, sample))
            };
            match run() {
                Ok((rows, sample)) => ApiResult {
                    id: a.id.clone(),
                    ok: true,
                    rows: Some(rows),
                    error: None,
                    sample,
                },
                Err(e) => ApiResult {
                    id: a.id.clone(),
                    ok: false,
                    rows: None,
                    error: Some(e.to_string()),
                    sample: vec![],
                },
            }
        })
        .collect()
}

/// Applies `sql` to the database at `path` in one `BEGIN IMMEDIATE` transaction and checks
/// `apis` before committing: any failure rolls the whole change back.
pub fn migrate(
    path: &Path,
    sql: &str,
    apis: &[Api],
    each: impl FnMut(usize),
) -> Result<(Applied, Vec<ApiResult>), String> {
    let mut c = open_rw(path).map_err(|e| e.to_string())?;
    let tx = c
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| e.to_string())?;
    let applied = apply(&tx, sql, each).map_err(|e| e.to_string())?;
    let results = check_apis(&tx, apis);
    if let Some(f) = results.iter().find(|r| !r.ok) {
        return Err(format!(
            "api '{}' fails after the change: {}",
            f.id,
            f.error.clone().unwrap_or_default()
        ));
    }
    tx.commit().map_err(|e| e.to_string())?;
    Ok((applied, results))
}
