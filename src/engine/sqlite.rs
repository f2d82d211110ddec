//! User SQL on SQLite files: a fresh connection per call, opened read-only unless the call may
//! write, with registered databases attached read-only, an authorizer that refuses ATTACH,
//! DETACH, PRAGMA writes and `load_extension`, a progress handler that stops the query at the
//! time limit, and a row cap. Blocking: call it on the engine's threads ([`super::pool`]).
//!
//! The time limit can only act between SQLite's VM steps, so no single function call may run
//! long: the built-ins whose cost grows with the product of their inputs' lengths are replaced
//! on every user connection by linear-time versions (`instr`, `replace`, two-argument
//! `trim`/`ltrim`/`rtrim`), `json_patch`/`jsonb_patch` (quadratic in the keys) take at most 64 KiB,
//! LIKE/GLOB patterns are capped at [`LIKE_PATTERN_MAX`] bytes and a call takes at most
//! [`FUNCTION_ARGS_MAX`] arguments.
//! Memory: each value's size is checked against the result byte budget before it is
//! converted, and SQLite's own allocations for the query are bounded by
//! `engine.max_query_memory` ([`super::memory`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, ffi};
use serde_json::{Value, json};

use super::{Class, EngineError, Limits, QueryResult, check_params};

/// Longest LIKE / GLOB pattern on a user connection (SQLite's default is 50,000).
pub const LIKE_PATTERN_MAX: i32 = 128;
/// Most arguments of one function call on a user connection.
pub const FUNCTION_ARGS_MAX: i32 = 100;

/// What to open.
#[derive(Debug, Clone)]
pub struct Target {
    /// The main file.
    pub path: PathBuf,
    /// `(alias, file)` pairs attached read-only.
    pub attach: Vec<(String, PathBuf)>,
    /// Open for writing (the file is created if missing).
    pub writable: bool,
}

fn uri_ro(p: &Path) -> String {
    match url::Url::from_file_path(p) {
        Ok(u) => format!("{u}?mode=ro"),
        Err(_) => format!("file:{}?mode=ro", p.display()),
    }
}

/// Opens a connection for user SQL with every guard installed.
pub fn open(t: &Target, limits: Limits) -> Result<Connection, EngineError> {
    open_reporting(t, limits, &mut Vec::new())
}

/// [`open`], skipping a database to attach that SQLite cannot open (a corrupt file behind a
/// valid header, say) and saying so in `skipped` instead of failing the call.
pub fn open_reporting(
    t: &Target,
    limits: Limits,
    skipped: &mut Vec<String>,
) -> Result<Connection, EngineError> {
    let mut flags = OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    flags |= if t.writable {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    };
    if !t.writable && !t.path.exists() {
        return Err(EngineError::Database(format!(
            "database file {} does not exist yet",
            t.path.display()
        )));
    }
    let conn = Connection::open_with_flags(&t.path, flags)
        .map_err(|e| EngineError::Database(e.to_string()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(db)?;
    for (alias, file) in &t.attach {
        if !file.exists() {
            continue;
        }
        let attached = conn
            .execute(
                "ATTACH DATABASE ?1 AS ?2",
                rusqlite::params![uri_ro(file), alias],
            )
            .and_then(|_| {
                // ATTACH opens lazily: read the schema now, so a corrupt file shows here
                conn.query_row(
                    &format!(
                        "SELECT count(*) FROM \"{}\".sqlite_schema",
                        alias.replace('"', "\"\"")
                    ),
                    [],
                    |r| r.get::<_, i64>(0),
                )
            });
        if let Err(e) = attached {
            let _ = conn.execute("DETACH DATABASE ?1", [alias]);
            skipped.push(format!("database '{alias}' is not attached: {e}"));
        }
    }
    if !t.writable {
        conn.pragma_update(None, "query_only", true).map_err(db)?;
    }
    // no single string or blob larger than the result budget is ever built
    conn.set_limit(
        rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH,
        limits.max_bytes as i32,
    )
    .map_err(db)?;
    conn.set_limit(
        rusqlite::limits::Limit::SQLITE_LIMIT_LIKE_PATTERN_LENGTH,
        LIKE_PATTERN_MAX,
    )
    .map_err(db)?;
    // json_set/json_remove & co. walk the document once per path argument
    conn.set_limit(
        rusqlite::limits::Limit::SQLITE_LIMIT_FUNCTION_ARG,
        FUNCTION_ARGS_MAX,
    )
    .map_err(db)?;
    linear::install(&conn, limits.max_bytes).map_err(db)?;
    conn.authorizer(Some(|ctx: AuthContext<'_>| match ctx.action {
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => Authorization::Deny,
        // the pipelines' bookkeeping is read, never written, by user SQL
        AuthAction::Insert { table_name }
        | AuthAction::Delete { table_name }
        | AuthAction::Update { table_name, .. }
        | AuthAction::DropTable { table_name, .. }
        | AuthAction::AlterTable { table_name, .. }
            if table_name.starts_with("_trex_etl_") =>
        {
            Authorization::Deny
        }
        AuthAction::Function { function_name }
            if function_name.eq_ignore_ascii_case("load_extension") =>
        {
            Authorization::Deny
        }
        AuthAction::Pragma {
            pragma_value: Some(_),
            pragma_name,
        } if !super::classify::PRAGMAS_WITH_ARG
            .contains(&pragma_name.to_ascii_lowercase().as_str()) =>
        {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }))
    .map_err(db)?;
    Ok(conn)
}

fn db(e: rusqlite::Error) -> EngineError {
    EngineError::Database(e.to_string())
}

/// Maps a SQLite error of user SQL to a caller-facing one.
fn explain(e: rusqlite::Error, limits: Limits) -> EngineError {
    // prepare errors come with an offset; judge them by their SQLite error
    let e = match e {
        rusqlite::Error::SqlInputError { error, msg, .. } => {
            rusqlite::Error::SqliteFailure(error, Some(msg))
        }
        other => other,
    };
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::OperationInterrupted => {
            EngineError::Timeout(limits.timeout.as_secs())
        }
        rusqlite::Error::SqliteFailure(f, _) if f.extended_code == ffi::SQLITE_AUTH => EngineError::Refused(
            "Not authorized: ATTACH, DETACH, PRAGMA changes and load_extension are not allowed".into(),
        ),
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ReadOnly => EngineError::Refused(
            "The database is read-only for this call (writes need allowWrite and a key that may write)".into(),
        ),
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::OutOfMemory => {
            EngineError::Refused(format!(
                "Query stopped: it needed more memory than engine.max_query_memory allows ({} MiB)",
                limits.max_memory / (1024 * 1024)
            ))
        }
        rusqlite::Error::MultipleStatement => {
            EngineError::Refused("Exactly one statement per call is allowed".into())
        }
        _ => {
            let m = e.to_string();
            if m.contains("not authorized") {
                EngineError::Refused(format!(
                    "Not authorized: ATTACH, DETACH, PRAGMA changes and load_extension are not allowed ({m})"
                ))
            } else if m.contains("attempt to write a readonly database") {
                EngineError::Refused("The database is read-only for this call (writes need allowWrite and a key that may write)".into())
            } else {
                EngineError::Database(m)
            }
        }
    }
}

/// Bytes a value takes in the result (blobs are sent as hex), known before it is converted.
fn size_of(v: &ValueRef<'_>) -> usize {
    match v {
        ValueRef::Text(t) => super::json_str_bytes(t),
        ValueRef::Blob(b) => b.len() * 2 + 14,
        _ => 8,
    }
}

fn to_json(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => json!(i),
        ValueRef::Real(f) => json!(f),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => json!({"blobHex": hex::encode(b)}),
    }
}

/// SQLite's own verdict on text the classifier could not read: its syntax error (with the
/// offset where it stopped), or `None` when SQLite accepts it.
pub fn syntax_check(conn: &Connection, sql: &str) -> Option<String> {
    let syntax = |m: &str| {
        m.contains("syntax error")
            || m.contains("incomplete input")
            || m.contains("unrecognized token")
    };
    match conn.prepare(sql) {
        Ok(_) => None,
        Err(rusqlite::Error::SqlInputError { msg, offset, .. }) if syntax(&msg) => {
            Some(format!("{msg} (at offset {offset})"))
        }
        Err(rusqlite::Error::SqliteFailure(_, Some(msg))) if syntax(&msg) => Some(msg),
        Err(_) => None,
    }
}

/// Runs one statement with positional parameters.
pub fn run(
    conn: &Connection,
    sql: &str,
    params: &[Value],
    class: Class,
    limits: Limits,
) -> Result<QueryResult, EngineError> {
    check_params(params)?;
    let started = Instant::now();
    let deadline = started + limits.timeout;
    conn.progress_handler(10_000, Some(move || Instant::now() >= deadline))
        .map_err(db)?;
    let mut stmt = conn.prepare(sql).map_err(|e| explain(e, limits))?;
    let want = stmt.parameter_count();
    if want != params.len() {
        return Err(EngineError::Refused(format!(
            "Invalid arguments: `parameters` has {} value(s) but the statement takes {want}",
            params.len()
        )));
    }
    for (i, p) in params.iter().enumerate() {
        let r = match p {
            Value::Null => stmt.raw_bind_parameter(i + 1, rusqlite::types::Null),
            Value::Bool(b) => stmt.raw_bind_parameter(i + 1, *b),
            Value::Number(n) if n.is_i64() => stmt.raw_bind_parameter(i + 1, n.as_i64()),
            Value::Number(n) => stmt.raw_bind_parameter(i + 1, n.as_f64()),
            Value::String(s) => stmt.raw_bind_parameter(i + 1, s.as_str()),
            _ => unreachable!("checked"),
        };
        r.map_err(db)?;
    }
    let columns: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
    let mut out = Vec::new();
    let mut truncated = false;
    let mut affected = None;
    if columns.is_empty() {
        let n = stmt.raw_execute().map_err(|e| explain(e, limits))?;
        affected = Some(n as u64);
    } else {
        let mut rows = stmt.raw_query();
        let mut bytes = 0usize;
        while let Some(row) = rows.next().map_err(|e| explain(e, limits))? {
            if out.len() == limits.row_limit {
                truncated = true;
                break;
            }
            // each value is measured before it is converted, so an over-budget row is never
            // copied
            let mut values: Vec<Value> = Vec::with_capacity(columns.len());
            for i in 0..columns.len() {
                let v = row.get_ref(i).map_err(|e| explain(e, limits))?;
                bytes += size_of(&v);
                if bytes > limits.max_bytes {
                    truncated = true;
                    break;
                }
                values.push(to_json(v));
            }
            if truncated {
                break;
            }
            out.push(values);
        }
        if class == Class::Moderate {
            affected = Some(conn.changes());
        }
    }
    Ok(QueryResult {
        row_count: out.len(),
        columns,
        rows: out,
        truncated,
        rows_affected: affected,
        statement_class: class,
        elapsed_ms: started.elapsed().as_millis() as u64,
        warnings: Vec::new(),
        slot: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits() -> Limits {
        Limits {
            row_limit: 5,
            timeout: Duration::from_millis(300),
            max_bytes: 1 << 20,
            max_memory: 64 << 20,
        }
    }

    #[test]
    fn read_only_cap_timeout_and_authorizer() {
        let d = tempfile::tempdir().unwrap();
        let t = Target {
            path: d.path().join("m.db"),
            attach: vec![],
            writable: true,
        };
        let c = open(&t, limits()).unwrap();
        run(&c, "CREATE TABLE t (a)", &[], Class::Dangerous, limits()).unwrap();
        run(
            &c,
            "INSERT INTO t SELECT value FROM generate_series(1, 20)",
            &[],
            Class::Moderate,
            limits(),
        )
        .ok();
        run(&c, "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM n WHERE x < 20) INSERT INTO t SELECT x FROM n", &[], Class::Moderate, limits()).unwrap();
        let ro = open(
            &Target {
                writable: false,
                ..t.clone()
            },
            limits(),
        )
        .unwrap();
        let r = run(
            &ro,
            "SELECT a FROM t WHERE a > ?1",
            &[json!(0)],
            Class::Safe,
            limits(),
        )
        .unwrap();
        assert_eq!(r.row_count, 5);
        assert!(r.truncated);
        assert!(matches!(
            run(&ro, "DELETE FROM t", &[], Class::Moderate, limits()),
            Err(EngineError::Refused(_))
        ));
        assert!(matches!(
            run(
                &ro,
                "ATTACH DATABASE 'x.db' AS x",
                &[],
                Class::Dangerous,
                limits()
            ),
            Err(EngineError::Refused(_))
        ));
        assert!(matches!(
            run(
                &ro,
                "SELECT load_extension('x')",
                &[],
                Class::Safe,
                limits()
            ),
            Err(EngineError::Refused(_))
        ));
        let forever =
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM n) SELECT count(*) FROM n";
        assert!(matches!(
            run(&ro, forever, &[], Class::Safe, limits()),
            Err(EngineError::Timeout(_))
        ));
        assert!(matches!(
            run(&ro, "SELECT 1; SELECT 2", &[], Class::Safe, limits()),
            Err(EngineError::Refused(_))
        ));
        assert!(run(&ro, "SELECT ?1", &[json!({"a": 1})], Class::Safe, limits()).is_err());
    }
}

/// Linear-time replacements for SQLite built-ins whose cost is the product of their inputs'
/// lengths (a single call of those cannot be interrupted by the time limit).
mod linear {
    use std::collections::HashSet;

    use memchr::memmem;
    use rusqlite::functions::{Context, FunctionFlags};
    use rusqlite::types::{Value, ValueRef};
    use rusqlite::{Connection, Error, Result};

    fn flags() -> FunctionFlags {
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC
    }

    /// A value as SQLite would show it as text (`None` for NULL).
    fn text(v: ValueRef<'_>) -> Option<Vec<u8>> {
        match v {
            ValueRef::Null => None,
            ValueRef::Integer(i) => Some(i.to_string().into_bytes()),
            ValueRef::Real(f) => Some(
                if f.fract() == 0.0 && f.abs() < 1e15 {
                    format!("{f:.1}")
                } else {
                    format!("{f}")
                }
                .into_bytes(),
            ),
            ValueRef::Text(t) | ValueRef::Blob(t) => Some(t.to_vec()),
        }
    }

    fn too_big() -> Error {
        Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_TOOBIG),
            Some("string or blob too big".into()),
        )
    }

    fn to_text(bytes: Vec<u8>) -> Value {
        Value::Text(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// `instr(X, Y)`: 1-based position of Y in X (characters; bytes when both are blobs).
    fn instr(ctx: &Context<'_>) -> Result<Value> {
        let (x, y) = (ctx.get_raw(0), ctx.get_raw(1));
        let blobs = matches!((x, y), (ValueRef::Blob(_), ValueRef::Blob(_)));
        let (Some(x), Some(y)) = (text(x), text(y)) else {
            return Ok(Value::Null);
        };
        let Some(at) = memmem::find(&x, &y) else {
            return Ok(Value::Integer(0));
        };
        let pos = if blobs {
            at
        } else {
            // characters before the match: UTF-8 lead bytes
            x[..at].iter().filter(|b| (**b & 0xC0) != 0x80).count()
        };
        Ok(Value::Integer(pos as i64 + 1))
    }

    /// `replace(X, Y, Z)`: every Y in X replaced by Z.
    fn replace(ctx: &Context<'_>, max: usize) -> Result<Value> {
        let (Some(x), Some(y), Some(z)) = (
            text(ctx.get_raw(0)),
            text(ctx.get_raw(1)),
            text(ctx.get_raw(2)),
        ) else {
            return Ok(Value::Null);
        };
        if y.is_empty() {
            return Ok(to_text(x));
        }
        let mut out = Vec::with_capacity(x.len());
        let mut last = 0;
        for at in memmem::find_iter(&x, &y) {
            out.extend_from_slice(&x[last..at]);
            out.extend_from_slice(&z);
            last = at + y.len();
            if out.len() > max {
                return Err(too_big());
            }
        }
        out.extend_from_slice(&x[last..]);
        if out.len() > max {
            return Err(too_big());
        }
        Ok(to_text(out))
    }

    /// `trim(X, Y)` and friends: characters of Y removed from the ends of X.
    fn trim(ctx: &Context<'_>, left: bool, right: bool) -> Result<Value> {
        let (Some(x), Some(y)) = (text(ctx.get_raw(0)), text(ctx.get_raw(1))) else {
            return Ok(Value::Null);
        };
        let x = String::from_utf8_lossy(&x).into_owned();
        let set: HashSet<char> = String::from_utf8_lossy(&y).chars().collect();
        let mut s = x.as_str();
        if left {
            s = s.trim_start_matches(|c| set.contains(&c));
        }
        if right {
            s = s.trim_end_matches(|c| set.contains(&c));
        }
        Ok(Value::Text(s.to_string()))
    }

    /// Largest input (both arguments together) of `json_patch` / `jsonb_patch`, whose cost
    /// grows with the product of the two objects' key counts.
    pub const JSON_PATCH_MAX: usize = 64 * 1024;

    thread_local! {
        /// A private in-memory connection that evaluates SQLite's own `json_patch` for inputs
        /// small enough to be cheap.
        static PLAIN: std::cell::RefCell<Option<Connection>> = const { std::cell::RefCell::new(None) };
    }

    /// `json_patch(T, P)` / `jsonb_patch(T, P)`: SQLite's own, for inputs up to
    /// [`JSON_PATCH_MAX`] bytes; larger ones are refused.
    fn json_patch(ctx: &Context<'_>, function: &'static str) -> Result<Value> {
        let (t, p) = (ctx.get_raw(0), ctx.get_raw(1));
        let len = |v: &ValueRef<'_>| match v {
            ValueRef::Text(b) | ValueRef::Blob(b) => b.len(),
            _ => 8,
        };
        if len(&t) + len(&p) > JSON_PATCH_MAX {
            return Err(Error::UserFunctionError(
                format!(
                    "{function}() of more than {} KiB is refused here: its cost grows with the square of the keys",
                    JSON_PATCH_MAX / 1024
                )
                .into(),
            ));
        }
        let owned = |v: ValueRef<'_>| -> Value {
            match v {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(i) => Value::Integer(i),
                ValueRef::Real(f) => Value::Real(f),
                ValueRef::Text(b) => Value::Text(String::from_utf8_lossy(b).into_owned()),
                ValueRef::Blob(b) => Value::Blob(b.to_vec()),
            }
        };
        let (t, p) = (owned(t), owned(p));
        PLAIN.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = Some(Connection::open_in_memory()?);
            }
            let c = slot.as_ref().expect("opened");
            c.query_row(&format!("SELECT {function}(?1, ?2)"), [t, p], |r| r.get(0))
        })
    }

    /// Registers the replacements on `conn`; `max` is the largest value it may build.
    pub fn install(conn: &Connection, max: usize) -> Result<()> {
        conn.create_scalar_function("json_patch", 2, flags(), |c| json_patch(c, "json_patch"))?;
        conn.create_scalar_function("jsonb_patch", 2, flags(), |c| json_patch(c, "jsonb_patch"))?;
        conn.create_scalar_function("instr", 2, flags(), instr)?;
        conn.create_scalar_function("replace", 3, flags(), move |c| replace(c, max))?;
        conn.create_scalar_function("trim", 2, flags(), |c| trim(c, true, true))?;
        conn.create_scalar_function("ltrim", 2, flags(), |c| trim(c, true, false))?;
        conn.create_scalar_function("rtrim", 2, flags(), |c| trim(c, false, true))?;
        Ok(())
    }
}

/// Creates trexdb's main data file (and its directory) when missing, in WAL mode.
pub fn create_main(main: &std::path::Path) -> crate::Result<()> {
    if let Some(dir) = main.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| crate::Error::io(format!("cannot create {}", dir.display()), e))?;
    }
    rusqlite::Connection::open(main)?.execute_batch("PRAGMA journal_mode = WAL;")?;
    Ok(())
}
