//! The SQLite work of a definition run, on blocking threads: rehearsing SQL on an in-memory
//! copy of a target's schema (define-time checking), scratch copies (online backup), applying
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

/// What a run does to a SQLite target: SQL, or a copy of tables from another SQLite database.
#[derive(Debug, Clone)]
pub enum Change {
    Sql(String),
    Snapshot {
        source: std::path::PathBuf,
        tables: Option<Vec<String>>,
        /// `none` (existing rows kept), `replace` (the table's rows replaced by the source's) or
        /// `merge` (source rows overwrite rows with the same key; others kept).
        replace: String,
    },
}

/// The schema name a snapshot's source is attached under.
const SOURCE: &str = "trex_src";

impl Change {
    /// Attaches the snapshot's source to `c` (read-only), before any transaction begins.
    pub fn prepare(&self, c: &Connection) -> rusqlite::Result<()> {
        if let Change::Snapshot { source, .. } = self {
            let uri = match url::Url::from_file_path(source) {
                Ok(u) => format!("{u}?mode=ro"),
                Err(_) => format!("file:{}?mode=ro", source.display()),
            };
            c.execute(&format!("ATTACH DATABASE ?1 AS {SOURCE}"), [uri])?;
        }
        Ok(())
    }

    /// Makes the change on `c`, inside the caller's transaction.
    pub fn apply(&self, c: &Connection, each: impl FnMut(usize)) -> rusqlite::Result<Applied> {
        match self {
            Change::Sql(sql) => apply(c, sql, each),
            Change::Snapshot {
                tables, replace, ..
            } => snapshot(c, tables.as_deref(), replace, each),
        }
    }
}

fn quote(id: &str) -> String {
    format!("\"{}\"", id.replace('"', "\"\""))
}

fn columns(c: &Connection, schema: &str, table: &str) -> rusqlite::Result<Vec<String>> {
    c.prepare(&format!(
        "SELECT name FROM pragma_table_info(?1, '{schema}') ORDER BY cid"
    ))?
    .query_map([table], |r| r.get(0))?
    .collect()
}

/// Copies tables of the attached source into the main database: tables missing in the target are
/// created as in the source; rows are copied for the columns both have.
fn snapshot(
    c: &Connection,
    tables: Option<&[String]>,
    replace: &str,
    mut each: impl FnMut(usize),
) -> rusqlite::Result<Applied> {
    let all: Vec<(String, String)> = c
        .prepare(&format!(
            "SELECT name, sql FROM {SOURCE}.sqlite_schema WHERE type = 'table'
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name <> ?1 ORDER BY name"
        ))?
        .query_map([super::LEDGER], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let chosen: Vec<&(String, String)> = match tables {
        None => all.iter().collect(),
        Some(want) => {
            let mut v = Vec::new();
            for t in want {
                match all.iter().find(|(n, _)| n == t) {
                    Some(x) => v.push(x),
                    None => {
                        return Err(rusqlite::Error::SqliteFailure(
                            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
                            Some(format!("table '{t}' is not in the snapshot's source")),
                        ));
                    }
                }
            }
            v
        }
    };
    let mut out = Applied::default();
    for (t, create) in chosen {
        if columns(c, "main", t)?.is_empty() {
            c.execute_batch(create)?;
            out.statements += 1;
        }
        let theirs = columns(c, SOURCE, t)?;
        let mine = columns(c, "main", t)?;
        let cols: Vec<String> = theirs
            .iter()
            .filter(|x| mine.contains(x))
            .map(|x| quote(x))
            .collect();
        let list = cols.join(", ");
        let before = c.total_changes();
        let verb = match replace {
            "replace" => {
                c.execute_batch(&format!("DELETE FROM main.{}", quote(t)))?;
                "INSERT"
            }
            "merge" => "INSERT OR REPLACE",
            _ => "INSERT OR IGNORE",
        };
        c.execute_batch(&format!(
            "{verb} INTO main.{q} ({list}) SELECT {list} FROM {SOURCE}.{q}",
            q = quote(t)
        ))?;
        out.statements += 1;
        out.rows_affected += c.total_changes().saturating_sub(before);
        each(out.statements);
    }
    Ok(out)
}

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

/// Opens a database read-only.
pub fn open_ro(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    c.busy_timeout(BUSY)?;
    Ok(c)
}

/// Runs the read `f` on a read-only connection to `path`. A database whose writer died
/// mid-transaction has a hot rollback journal, which a read-only connection may not roll back
/// (`SQLITE_READONLY_ROLLBACK`): it is then opened read-write once, so SQLite rolls the cut-short
/// transaction back, and `f` runs there.
pub fn read_only<T>(
    path: &Path,
    f: impl Fn(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    match f(&open_ro(path)?) {
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.extended_code == rusqlite::ffi::SQLITE_READONLY_ROLLBACK =>
        {
            f(&open_rw(path)?)
        }
        r => r,
    }
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
    read_only(path, schema::sqlite)
}

/// Runs `sql` on an in-memory database holding the schema of `path`, in a transaction that is
/// rolled back: SQLite's own verdict on whether the SQL runs against that schema.
pub fn rehearse(path: &Path, sql: &str) -> Result<(), String> {
    let mem = Connection::open_in_memory().map_err(|e| e.to_string())?;
    if path.exists() {
        let ddl: Vec<String> = read_only(path, |src| {
            src.prepare("SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 ELSE 2 END, rowid")
                .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
        })
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

/// Copies the database at `from` to a new file `to` with SQLite's online backup, page by page
/// under one read snapshot (others may go on writing); an empty database when `from` does not
/// exist yet.
/// A `durable` copy (a pre-run copy that a rollback after a crash may need) is synced to disk;
/// a scratch copy for a test is not (it is deleted after).
pub fn copy(from: &Path, to: &Path, durable: bool) -> rusqlite::Result<()> {
    if let Some(d) = to.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    let _ = std::fs::remove_file(to);
    let mut dst = Connection::open(to)?;
    dst.execute_batch(if durable {
        "PRAGMA synchronous = FULL"
    } else {
        "PRAGMA synchronous = OFF; PRAGMA journal_mode = OFF"
    })?;
    if !from.exists() {
        dst.execute_batch("VACUUM")?;
        return Ok(());
    }
    let src = open_ro(from)?;
    whole_backup(&src, &mut dst)
}

/// Copies every page of `src` into `dst` in one backup step: one read snapshot of the source,
/// one write transaction on the destination (a reader of `dst` sees the old or the new content).
/// A busy lock is waited for, as long as the busy timeout.
fn whole_backup(src: &Connection, dst: &mut Connection) -> rusqlite::Result<()> {
    use rusqlite::backup::{Backup, StepResult};
    let b = Backup::new(src, dst)?;
    let deadline = std::time::Instant::now() + BUSY;
    loop {
        match b.step(-1)? {
            StepResult::Done => return Ok(()),
            StepResult::Busy | StepResult::Locked if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                    Some("the database stayed locked".into()),
                ));
            }
        }
    }
}

/// `PRAGMA integrity_check` of the database at `path`: "ok", or the first problem.
pub fn integrity(path: &Path) -> rusqlite::Result<String> {
    open_ro(path)?.query_row("PRAGMA integrity_check", [], |r| r.get(0))
}

/// Puts the database at `to` back to the content of `from` with the online backup API, in one
/// step: a reader sees the old or the new content.
pub fn restore(from: &Path, to: &Path) -> rusqlite::Result<()> {
    let src = open_ro(from)?;
    let mut dst = open_rw(to)?;
    whole_backup(&src, &mut dst)
}

/// True when `s` ends with a complete SQL statement, by SQLite's own tokenizer
/// (`sqlite3_complete`: semicolons inside strings, comments and trigger bodies do not count).
fn complete(s: &str) -> bool {
    match std::ffi::CString::new(s) {
        // SAFETY: `c` is a NUL-terminated string that outlives the call
        Ok(c) => unsafe { rusqlite::ffi::sqlite3_complete(c.as_ptr()) != 0 },
        Err(_) => false,
    }
}

/// `sql` cut into statements (each with its `;`; a trailing part without one is the last).
pub fn statements(sql: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, ch) in sql.char_indices() {
        if ch == ';' && complete(&sql[start..=i]) {
            out.push(&sql[start..=i]);
            start = i + 1;
        }
    }
    if !sql[start..].trim().is_empty() {
        out.push(&sql[start..]);
    }
    out
}

/// Applies `sql` statement by statement on `c` (inside the caller's transaction), calling
/// `each(n)` after statement n. Statements are cut first, so each is prepared from its own
/// text (preparing from the rest of a large script each time would copy it again and again).
pub fn apply(c: &Connection, sql: &str, mut each: impl FnMut(usize)) -> rusqlite::Result<Applied> {
    let refuse = |m: String| {
        rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISUSE),
            Some(m),
        )
    };
    let parts = statements(sql);
    super::check_statements(&parts).map_err(refuse)?;
    let mut out = Applied::default();
    for part in parts {
        let mut batch = rusqlite::Batch::new(c, part);
        while let Some(mut st) = batch.next()? {
            let before = c.total_changes();
            let mut rows = st.raw_query();
            while rows.next()?.is_some() {}
            out.statements += 1;
            out.rows_affected += c.total_changes().saturating_sub(before);
            if c.is_autocommit() {
                return Err(refuse("a statement ended the runner's transaction".into()));
            }
            each(out.statements);
        }
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
                if !st.readonly() {
                    return Err(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
                        Some("an api must be a read-only query".into()),
                    ));
                }
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

/// Makes `change` on the database at `path` in one `BEGIN IMMEDIATE` transaction and checks
/// `apis` before committing: any failure rolls the whole change back.
pub fn migrate(
    path: &Path,
    change: &Change,
    apis: &[Api],
    each: impl FnMut(usize),
) -> Result<(Applied, Vec<ApiResult>), String> {
    let mut c = open_rw(path).map_err(|e| e.to_string())?;
    change.prepare(&c).map_err(|e| e.to_string())?;
    let tx = c
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| e.to_string())?;
    let applied = change.apply(&tx, each).map_err(|e| e.to_string())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_cut_where_sqlite_says_they_end() {
        let sql = "CREATE TABLE t (x); INSERT INTO t VALUES ('a;b'); -- c;\n\
                   CREATE TRIGGER g AFTER INSERT ON t BEGIN SELECT 1; SELECT 2; END;\n SELECT 3";
        let parts = statements(sql);
        assert_eq!(parts.len(), 4, "{parts:?}");
        assert!(parts[2].contains("SELECT 2; END;"), "{parts:?}");
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("BEGIN").unwrap();
        let a = apply(&c, sql, |_| {}).unwrap();
        assert_eq!(a.statements, 4);
        assert_eq!(a.rows_affected, 1);
    }
}
