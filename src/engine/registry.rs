//! From a registered database id to something the engine can run SQL on: checks that it exists
//! and is enabled, resolves a sqlite path inside the allowed directories, opens the sealed
//! credential of a PostgreSQL server. Also runs classified statements with the scope rules that
//! every SQL tool shares.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::classify::Problem;
use super::pool::EnginePool;
use super::{
    Class, EngineError, Flavor, Limits, QueryResult, Verdict, classify, paths, postgres, sqlite,
};
use crate::app::App;
use crate::auth::scopes::Scopes;
use crate::store::databases::{self, Database};

/// Where a registered database lives.
#[derive(Debug, Clone)]
pub enum Resolved {
    Sqlite(PathBuf),
    Postgres(postgres::Target),
}

/// The associated data a credential password is sealed with.
pub fn credential_aad(database_id: &str, username: &str) -> String {
    format!("database_credentials:{database_id}:{username}:password")
}

/// The engine limits from config.
pub fn limits(app: &App) -> Limits {
    Limits {
        row_limit: app.config.engine.row_limit,
        timeout: Duration::from_secs(app.config.engine.query_timeout_secs),
        max_bytes: app.config.engine.max_result_bytes,
        max_memory: app.config.engine.max_query_memory,
    }
}

/// Looks a database up; `check_enabled` refuses a disabled one.
pub async fn lookup(
    app: &App,
    id: &str,
    check_enabled: bool,
) -> Result<(Database, Resolved), EngineError> {
    let key = id.to_string();
    let found = app
        .store
        .run(move |c| {
            let Some(d) = databases::get(c, &key)? else {
                return Ok(None);
            };
            let secret = databases::first_secret(c, &key)?;
            Ok(Some((d, secret)))
        })
        .await
        .map_err(|e| EngineError::Internal(format!("database lookup: {e}")))?;
    let (db, secret) = found.ok_or_else(|| EngineError::Refused("Database not found".into()))?;
    if check_enabled && !db.enabled {
        return Err(EngineError::Refused(format!(
            "Database '{}' is disabled",
            db.id
        )));
    }
    let resolved = match db.dialect.as_str() {
        "sqlite" => Resolved::Sqlite(
            paths::resolve_sqlite(&app.config, &db.database_name, "databaseName")
                .map_err(|e| EngineError::Refused(e.to_string()))?,
        ),
        _ => {
            let (_, user, sealed) = secret.ok_or_else(|| {
                EngineError::Refused("No credentials configured for this database".into())
            })?;
            let password = app
                .master
                .open(&sealed, &credential_aad(&db.id, &user))
                .map_err(|e| EngineError::Internal(format!("opening a sealed credential: {e}")))?;
            Resolved::Postgres(postgres::Target {
                host: db.host.clone().unwrap_or_else(|| "127.0.0.1".into()),
                port: db.port.unwrap_or(5432) as u16,
                dbname: db.database_name.clone(),
                user,
                password: Some(password),
            })
        }
    };
    Ok((db, resolved))
}

/// How to mint a key with `dangerousSql`, for refusals that need one.
const DANGEROUS_KEY_HINT: &str = "mint one with `trex api-key create --user <admin email> --name <name> --dangerous-sql` \
     or the tool api-key-create with {\"scopes\": {\"dangerousSql\": true}}";

/// Refuses what the call may not run, saying why and what would allow it: more than one
/// statement, a read-only key and a statement that is not Safe, Dangerous SQL without the
/// `dangerousSql` scope, a data change without `allowWrite`.
pub fn permit(v: &Verdict, allow_write: bool, scopes: Option<&Scopes>) -> Result<(), EngineError> {
    match &v.problem {
        Some(Problem::Several(n)) => {
            return Err(EngineError::Refused(format!(
                "Refused: one statement per call (this text holds {n}); send them one at a time"
            )));
        }
        Some(Problem::Amplifies(f)) => {
            return Err(EngineError::Refused(format!(
                "Refused: EXPLAIN of a statement with {} — the plan would carry the value it builds, \
                 which cannot be bounded like rows; run the statement itself, or EXPLAIN it without that",
                if f.starts_with("a cast") {
                    f.clone()
                } else {
                    format!("{f}()")
                }
            )));
        }
        _ => {}
    }
    if scopes.is_some_and(|s| s.read_only) && v.class != Class::Safe {
        return Err(EngineError::Refused(format!(
            "Refused: this API key is read-only (scope readOnly), so only Safe statements (reads) run with it; \
             this one is classed {}{}",
            v.class.as_str(),
            if v.class == Class::Dangerous {
                format!(" ({})", v.reason)
            } else {
                String::new()
            }
        )));
    }
    match v.class {
        Class::Dangerous if !Scopes::dangerous_sql_allowed(scopes) => {
            Err(EngineError::Refused(format!(
                "Refused: this statement is classed Dangerous ({}); it needs an API key with the scope \"dangerousSql\": true — {DANGEROUS_KEY_HINT}",
                v.reason
            )))
        }
        Class::Moderate | Class::Dangerous if !allow_write => Err(EngineError::Refused(
            "Refused: this statement changes data; pass allowWrite: true to run it".into(),
        )),
        _ => Ok(()),
    }
}

/// A syntax error as the caller should see it.
fn syntax_error(msg: &str) -> EngineError {
    EngineError::Refused(format!("Syntax error: {msg}"))
}

/// Classifies and runs one statement on a sqlite file (blocking work on the engine's threads).
/// Text the classifier cannot read is shown to SQLite first: a syntax error is reported as
/// one (with SQLite's message and offset), not as a Dangerous statement.
pub async fn run_sqlite(
    pool: &EnginePool,
    target: sqlite::Target,
    sql: String,
    params: Vec<Value>,
    allow_write: bool,
    scopes: Option<&Scopes>,
    limits: Limits,
) -> Result<QueryResult, EngineError> {
    let v = classify(&sql, Flavor::Sqlite);
    let read_only_key = scopes.is_some_and(|s| s.read_only);
    let checked = if matches!(v.problem, Some(Problem::Unparsed(_))) {
        let (t, q) = (target.clone(), sql.clone());
        pool.run(move || {
            let conn = sqlite::open(
                &sqlite::Target {
                    writable: false,
                    ..t
                },
                limits,
            )?;
            Ok(sqlite::syntax_check(&conn, &q))
        })
        .await?
    } else {
        None
    };
    if let Some(msg) = checked {
        return Err(syntax_error(&msg));
    }
    permit(&v, allow_write, scopes)?;
    let writable = target.writable && v.class != Class::Safe && !read_only_key;
    let (mut r, slot) = pool
        .run_holding(move || {
            let t = sqlite::Target { writable, ..target };
            let mut skipped = Vec::new();
            let conn = sqlite::open_reporting(&t, limits, &mut skipped)?;
            let mut r = sqlite::run(&conn, &sql, &params, v.class, limits)?;
            r.warnings = skipped;
            Ok(r)
        })
        .await?;
    r.slot = Some(std::sync::Arc::new(slot));
    Ok(r)
}

/// Classifies and runs one statement on a PostgreSQL server (holding an engine slot). Text the
/// classifier cannot read is prepared on the server first: a syntax error is reported with the
/// server's message and position.
#[allow(clippy::too_many_arguments)]
pub async fn run_postgres(
    pool: &EnginePool,
    target: &postgres::Target,
    sql: &str,
    params: &[Value],
    allow_write: bool,
    scopes: Option<&Scopes>,
    limits: Limits,
    connect_timeout: Duration,
) -> Result<QueryResult, EngineError> {
    let v = classify(sql, Flavor::Postgres);
    let slot = pool.admit().await?;
    if matches!(v.problem, Some(Problem::Unparsed(_))) {
        let client = postgres::connect(target, connect_timeout).await?;
        if let Some(msg) = postgres::syntax_check(&client, sql).await {
            return Err(syntax_error(&msg));
        }
    }
    permit(&v, allow_write, scopes)?;
    let mut client = postgres::connect(target, connect_timeout).await?;
    let mut r = postgres::run(&mut client, sql, params, &v, limits).await?;
    r.slot = Some(std::sync::Arc::new(slot));
    Ok(r)
}
