//! User SQL on PostgreSQL: a connection per call (tokio-postgres, parameters built from typed
//! fields, never a concatenated connection string), reads inside `BEGIN READ ONLY`,
//! `statement_timeout` set per transaction and the whole call bounded by the same limit (the query
//! is cancelled on the server when it fires), rows fetched through a portal so at most the row cap
//! is ever read. Results are decoded on the server into one JSON text per row, **by position**
//! (the columns are renamed `"1"`, `"2"`, … so duplicate names such as `a.id, b.id` both survive),
//! with `numeric` columns sent as strings (their precision kept, and values beyond f64 never
//! lost), and a row larger than the result byte budget is never sent: the server sends its size
//! instead, and the result is cut there.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};

use super::{Class, EngineError, Limits, QueryResult, Verdict, check_params};

/// How to reach a server.
#[derive(Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub password: Option<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "postgresql://{}@{}:{}/{}",
            self.user, self.host, self.port, self.dbname
        )
    }
}

/// Connects (bounded by `timeout`); the connection task ends when the client is dropped.
pub async fn connect(t: &Target, timeout: Duration) -> Result<Client, EngineError> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(&t.host)
        .port(t.port)
        .dbname(&t.dbname)
        .user(&t.user)
        .connect_timeout(timeout)
        .application_name("trex");
    if let Some(p) = &t.password {
        cfg.password(p.as_bytes());
    }
    let fut = cfg.connect(NoTls);
    let (client, conn) = tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| {
            EngineError::Connect(format!(
                "Connection failed: no answer within {} s",
                timeout.as_secs()
            ))
        })?
        .map_err(|e| EngineError::Connect(format!("Connection failed: {}", describe(&e))))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// The most useful text of a PostgreSQL error.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => d.message().to_string(),
        None => {
            let s = e.to_string();
            match std::error::Error::source(e) {
                Some(src) => format!("{s}: {src}"),
                None => s,
            }
        }
    }
}

fn dberr(e: tokio_postgres::Error) -> EngineError {
    if e.as_db_error().is_some_and(|d| d.code().code() == "57014") {
        return EngineError::Database("canceling statement due to statement timeout".into());
    }
    EngineError::Database(describe(&e))
}

/// `SELECT 1` and the server version.
pub async fn ping(t: &Target, timeout: Duration) -> Result<String, EngineError> {
    let c = connect(t, timeout).await?;
    let row = tokio::time::timeout(
        timeout,
        c.query_one("SELECT 1, current_setting('server_version')", &[]),
    )
    .await
    .map_err(|_| EngineError::Connect("Connection failed: SELECT 1 did not answer in time".into()))?
    .map_err(dberr)?;
    Ok(row.get::<_, String>(1))
}

/// The server's verdict on text the classifier could not read: its syntax error (class 42601,
/// with the character position), or `None` when the server accepts it. Preparing runs nothing.
pub async fn syntax_check(client: &Client, sql: &str) -> Option<String> {
    match client.prepare(sql).await {
        Ok(_) => None,
        Err(e) => {
            let d = e.as_db_error()?;
            if d.code().code() != "42601" {
                return None;
            }
            Some(match d.position() {
                Some(tokio_postgres::error::ErrorPosition::Original(p)) => {
                    format!("{} (at character {p})", d.message())
                }
                _ => d.message().to_string(),
            })
        }
    }
}

/// Converts a JSON parameter to the type PostgreSQL inferred for it.
fn param(ty: &Type, v: &Value, i: usize) -> Result<Box<dyn ToSql + Sync + Send>, EngineError> {
    let bad = || {
        EngineError::Refused(format!(
            "Invalid arguments: `parameters[{i}]` does not fit the parameter's type {ty} (cast it in SQL, e.g. ${}::text)",
            i + 1
        ))
    };
    if v.is_null() {
        return Ok(Box::new(Option::<String>::None));
    }
    Ok(match *ty {
        Type::BOOL => Box::new(v.as_bool().ok_or_else(bad)?),
        Type::INT2 => Box::new(i16::try_from(v.as_i64().ok_or_else(bad)?).map_err(|_| bad())?),
        Type::INT4 => Box::new(i32::try_from(v.as_i64().ok_or_else(bad)?).map_err(|_| bad())?),
        Type::INT8 => Box::new(v.as_i64().ok_or_else(bad)?),
        Type::FLOAT4 => Box::new(v.as_f64().ok_or_else(bad)? as f32),
        Type::FLOAT8 => Box::new(v.as_f64().ok_or_else(bad)?),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => match v {
            Value::String(s) => Box::new(s.clone()),
            other => Box::new(other.to_string()),
        },
        _ => return Err(bad()),
    })
}

/// Runs one classified statement. Safe statements run in a read-only transaction. The whole call
/// (not each fetch) is bounded by `limits.timeout`; when it fires the query is cancelled on the
/// server.
pub async fn run(
    client: &mut Client,
    sql: &str,
    params: &[Value],
    verdict: &Verdict,
    limits: Limits,
) -> Result<QueryResult, EngineError> {
    check_params(params)?;
    let cancel = client.cancel_token();
    match tokio::time::timeout(
        limits.timeout,
        run_inner(client, sql, params, verdict, limits),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => {
            if let Err(e) = cancel.cancel_query(NoTls).await {
                tracing::warn!("cannot cancel a PostgreSQL query past its time limit: {e}");
            }
            Err(EngineError::Timeout(limits.timeout.as_secs()))
        }
    }
}

/// A column's JSON as a value — or, when it holds a number JSON cannot carry exactly (more than
/// 15 significant digits with a fraction or exponent, beyond f64, an integer beyond 64 bits;
/// e.g. a `numeric` inside a row, array or `jsonb`), as its JSON text, so nothing is rounded and
/// nothing fails.
fn exact_value(raw: &str) -> Value {
    if lossy_numbers(raw) {
        return Value::String(raw.to_string());
    }
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()))
}

/// True when a number in the JSON text `raw` would not survive parsing exactly.
fn lossy_numbers(raw: &str) -> bool {
    let b = raw.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let tok = &raw[start..i];
                let integer = !tok.contains(['.', 'e', 'E']);
                if integer {
                    if tok.parse::<i64>().is_err() && tok.parse::<u64>().is_err() {
                        return true;
                    }
                } else {
                    let mantissa = tok.split(['e', 'E']).next().unwrap_or("");
                    let digits = mantissa
                        .chars()
                        .filter(char::is_ascii_digit)
                        .collect::<String>();
                    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
                    if significant > 15 || !tok.parse::<f64>().is_ok_and(f64::is_finite) {
                        return true;
                    }
                }
            }
            _ => i += 1,
        }
    }
    false
}

/// A quoted positional column name: `"1"`, `"2"`, …
fn pos(i: usize) -> String {
    format!("\"{}\"", i + 1)
}

/// The statement wrapped so each row comes back as one JSON array text, by position, with
/// numerics as strings, and rows over `max_bytes` replaced by their size.
fn wrap(sql: &str, columns: &[tokio_postgres::Column], query: bool, max_bytes: usize) -> String {
    let names: Vec<String> = (0..columns.len()).map(pos).collect();
    let select: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if *c.type_() == Type::NUMERIC || *c.type_() == Type::NUMERIC_ARRAY {
                format!("q.{}::text AS {}", pos(i), pos(i))
            } else {
                format!("q.{}", pos(i))
            }
        })
        .collect();
    // the user's text ends on its own line, so a trailing `-- comment` cannot swallow the wrapper
    let source = if query {
        format!("({sql}\n) AS q({})", names.join(", "))
    } else {
        "q".to_string()
    };
    let inner = format!(
        "SELECT row_to_json(r)::text AS j FROM (SELECT {} FROM {source}) AS r",
        select.join(", ")
    );
    let body = format!(
        "SELECT CASE WHEN octet_length(s.j) <= {max_bytes} THEN s.j END, octet_length(s.j) FROM ({inner}) AS s"
    );
    if query {
        body
    } else {
        format!("WITH q({}) AS ({sql}\n) {body}", names.join(", "))
    }
}

async fn run_inner(
    client: &mut Client,
    sql: &str,
    params: &[Value],
    verdict: &Verdict,
    limits: Limits,
) -> Result<QueryResult, EngineError> {
    let started = Instant::now();
    let tx = client
        .build_transaction()
        .read_only(verdict.class == Class::Safe)
        .start()
        .await
        .map_err(dberr)?;
    let ms = limits.timeout.as_millis().to_string();
    tx.execute("SELECT set_config('statement_timeout', $1, true)", &[&ms])
        .await
        .map_err(dberr)?;
    let stmt = tx.prepare(sql).await.map_err(dberr)?;
    if stmt.params().len() != params.len() {
        return Err(EngineError::Refused(format!(
            "Invalid arguments: `parameters` has {} value(s) but the statement takes {}",
            params.len(),
            stmt.params().len()
        )));
    }
    let boxed: Vec<Box<dyn ToSql + Sync + Send>> = stmt
        .params()
        .iter()
        .zip(params)
        .enumerate()
        .map(|(i, (t, v))| param(t, v, i))
        .collect::<Result<_, _>>()?;
    let refs = || boxed.iter().map(|b| b.as_ref() as &(dyn ToSql + Sync));
    let columns: Vec<String> = stmt
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let timeout = |e: EngineError| match e {
        EngineError::Database(m) if m.contains("statement timeout") => {
            EngineError::Timeout(limits.timeout.as_secs())
        }
        other => other,
    };
    let mut result = QueryResult {
        columns: columns.clone(),
        rows: Vec::new(),
        row_count: 0,
        truncated: false,
        rows_affected: None,
        statement_class: verdict.class,
        elapsed_ms: 0,
        warnings: Vec::new(),
        slot: None,
    };
    if columns.is_empty() {
        let n = tx
            .execute_raw(&stmt, refs())
            .await
            .map_err(|e| timeout(dberr(e)))?;
        result.rows_affected = Some(n);
    } else {
        // utility statements with output (EXPLAIN, SHOW) have text columns; queries and
        // DML … RETURNING are decoded through row_to_json, which handles every type
        let text_columns = !verdict.query && !verdict.returning;
        let wrapped =
            (!text_columns).then(|| wrap(sql, stmt.columns(), verdict.query, limits.max_bytes));
        let run_stmt = match &wrapped {
            Some(w) => tx.prepare_typed(w, stmt.params()).await.map_err(dberr)?,
            None => stmt.clone(),
        };
        let portal = tx
            .bind_raw(&run_stmt, refs())
            .await
            .map_err(|e| timeout(dberr(e)))?;
        // fetch in small batches, so neither the row cap nor the byte budget is ever overrun by
        // much: at most one batch past them is read
        const BATCH: usize = 100;
        let mut bytes = 0usize;
        'fetch: loop {
            let want = (limits.row_limit + 1 - result.rows.len()).min(BATCH);
            let rows = tx
                .query_portal(&portal, want as i32)
                .await
                .map_err(|e| timeout(dberr(e)))?;
            let got = rows.len();
            for row in &rows {
                if result.rows.len() == limits.row_limit {
                    result.truncated = true;
                    break 'fetch;
                }
                let values: Vec<Value> = if text_columns {
                    (0..columns.len())
                        .map(|i| {
                            row.try_get::<_, Option<String>>(i)
                                .ok()
                                .flatten()
                                .map(Value::String)
                                .unwrap_or(Value::Null)
                        })
                        .collect()
                } else {
                    let text: Option<String> = row.try_get(0).map_err(dberr)?;
                    let Some(text) = text else {
                        // the row is larger than the whole byte budget: it was not sent
                        result.truncated = true;
                        break 'fetch;
                    };
                    if bytes + text.len() > limits.max_bytes {
                        result.truncated = true;
                        break 'fetch;
                    }
                    let mut obj = serde_json::from_str::<
                        std::collections::HashMap<String, Box<serde_json::value::RawValue>>,
                    >(&text)
                    .map_err(|e| {
                        EngineError::Internal(format!(
                            "a PostgreSQL row did not decode as JSON: {e}"
                        ))
                    })?;
                    (0..columns.len())
                        .map(|i| {
                            obj.remove(&(i + 1).to_string())
                                .map(|raw| exact_value(raw.get()))
                                .unwrap_or(Value::Null)
                        })
                        .collect()
                };
                bytes += values.iter().map(super::value_bytes).sum::<usize>();
                if bytes > limits.max_bytes {
                    result.truncated = true;
                    break 'fetch;
                }
                result.rows.push(values);
            }
            if got < want {
                break;
            }
        }
        if verdict.class == Class::Moderate {
            result.rows_affected = Some(result.rows.len() as u64);
        }
    }
    tx.commit().await.map_err(dberr)?;
    result.row_count = result.rows.len();
    result.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_json_cannot_carry_stay_text() {
        assert!(!lossy_numbers(
            r#"{"a":1,"b":9223372036854775807,"c":1.5,"s":"123456789012345678901.5"}"#
        ));
        assert!(lossy_numbers("[12345678901234567890.123456789]"));
        assert!(lossy_numbers("[1e400]"));
        assert!(lossy_numbers("123456789012345678901234"));
        assert_eq!(exact_value("[1e400]"), Value::String("[1e400]".into()));
        assert_eq!(exact_value("[1,2]"), serde_json::json!([1, 2]));
    }
}
