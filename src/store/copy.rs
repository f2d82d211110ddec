//! Copying a whole control store to another (`trex store migrate --to postgres://…`): every
//! table, row for row and value for value — sealed secrets stay sealed, key hashes stay hashes —
//! into an empty store of the same schema version, in one write transaction on the target, then
//! checked by a count and a SHA-256 of every table read back from both sides.

use sha2::{Digest, Sha256};

use super::sql::{FromValue, Param, Value};
use super::{Backend, Store};
use crate::error::{Error, Result};

/// Every table of the control store, parents before children (foreign keys).
pub const TABLES: &[&str] = &[
    "users",
    "roles",
    "user_roles",
    "api_keys",
    "mcp_sessions",
    "web_sessions",
    "audit_log",
    "settings",
    "sso_providers",
    "oauth_apps",
    "oauth_tokens",
    "oauth_consents",
    "databases",
    "database_credentials",
    "jobs",
    "migration_definitions",
    "migration_runs",
    "migration_run_targets",
    "nodes",
    "plugins",
    "pipelines",
    "mcp_tasks",
    "login_attempts",
];

/// A value read from any column, owned.
#[derive(Debug, Clone, PartialEq)]
enum Owned {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl FromValue for Owned {
    fn from_value(v: Value<'_>) -> std::result::Result<Self, String> {
        Ok(match v {
            Value::Null => Owned::Null,
            Value::Int(i) => Owned::Int(i),
            Value::Real(f) => Owned::Real(f),
            Value::Text(s) => Owned::Text(s.to_owned()),
            Value::Blob(b) => Owned::Blob(b.to_vec()),
        })
    }
}

impl Param for Owned {
    fn value(&self) -> Value<'_> {
        match self {
            Owned::Null => Value::Null,
            Owned::Int(i) => Value::Int(*i),
            Owned::Real(f) => Value::Real(*f),
            Owned::Text(s) => Value::Text(s),
            Owned::Blob(b) => Value::Blob(b),
        }
    }
}

/// One table as copied: its rows and the checksum both sides agreed on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Copied {
    pub table: &'static str,
    pub rows: usize,
    pub sha256: String,
}

/// The column names of `table`, from the SQLite source.
fn columns(from: &Store, table: &str) -> Result<Vec<String>> {
    from.write_sync(|c| {
        c.query_map(
            "SELECT name FROM pragma_table_info(?1) ORDER BY cid",
            [table],
            |r| r.get(0),
        )
    })
}

fn read_all(store: &Store, table: &str, cols: &[String]) -> Result<Vec<Vec<Owned>>> {
    let sql = format!("SELECT {} FROM {table}", cols.join(", "));
    let n = cols.len();
    store.write_sync(|c| {
        c.query_map(&sql, (), |r| {
            (0..n).map(|i| r.get::<usize, Owned>(i)).collect()
        })
    })
}

/// SHA-256 over the rows in a canonical order (each row as JSON, sorted), so both engines'
/// answers compare whatever order they return rows in.
fn checksum(rows: &[Vec<Owned>]) -> String {
    let mut lines: Vec<String> = rows
        .iter()
        .map(|r| {
            let vals: Vec<serde_json::Value> = r
                .iter()
                .map(|v| match v {
                    Owned::Null => serde_json::Value::Null,
                    Owned::Int(i) => (*i).into(),
                    Owned::Real(f) => (*f).into(),
                    Owned::Text(s) => s.clone().into(),
                    Owned::Blob(b) => format!("x'{}'", hex::encode(b)).into(),
                })
                .collect();
            serde_json::Value::Array(vals).to_string()
        })
        .collect();
    lines.sort();
    let mut h = Sha256::new();
    for l in &lines {
        h.update(l.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// Copies every table of the SQLite store `from` into the empty store `to` (blocking: call it
/// from a thread that may block). Refused when `to` already has users, or the two are not at
/// the same schema version.
pub fn copy_all(from: &Store, to: &Store) -> Result<Vec<Copied>> {
    if from.backend() != Backend::Sqlite {
        return Err(Error::Invalid(
            "the source must be a SQLite store (trex.db)".into(),
        ));
    }
    let (vf, vt) = (
        from.write_sync(super::schema::version)?,
        to.write_sync(super::schema::version)?,
    );
    if vf != vt {
        return Err(Error::Invalid(format!(
            "the source is at schema version {vf} and the target at {vt}: run the same trex on both"
        )));
    }
    let users: i64 =
        to.write_sync(|c| c.query_row("SELECT count(*) FROM users", (), |r| r.get(0)))?;
    if users > 0 {
        return Err(Error::Conflict(
            "the target store is not empty (it has users); copy into a new schema (store.schema)"
                .into(),
        ));
    }
    let mut plan = Vec::new();
    for table in TABLES {
        let cols = columns(from, table)?;
        let rows = read_all(from, table, &cols)?;
        plan.push((*table, cols, rows));
    }
    to.write_sync(|c| {
        for (table, cols, rows) in &plan {
            let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
            let sql = format!(
                "INSERT INTO {table} ({}) VALUES ({})",
                cols.join(", "),
                marks.join(", ")
            );
            for row in rows {
                let params: Vec<&dyn Param> = row.iter().map(|v| v as &dyn Param).collect();
                c.execute(&sql, params.as_slice())?;
            }
        }
        if c.backend() == Backend::Postgres {
            // the identity column goes on after the copied ids
            c.execute_batch(
                "SELECT setval(pg_get_serial_sequence('audit_log', 'id'),
                               coalesce((SELECT max(id) FROM audit_log), 0) + 1, false)",
            )?;
        }
        Ok(())
    })?;
    let mut out = Vec::new();
    for (table, cols, rows) in &plan {
        let back = read_all(to, table, cols)?;
        let (a, b) = (checksum(rows), checksum(&back));
        if rows.len() != back.len() || a != b {
            return Err(Error::Other(format!(
                "table {table}: {} rows copied but {} read back (checksums {a} and {b})",
                rows.len(),
                back.len()
            )));
        }
        out.push(Copied {
            table,
            rows: rows.len(),
            sha256: a,
        });
    }
    Ok(out)
}
