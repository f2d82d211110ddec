//! From a registered database id to something the engine can run SQL on: checks that it exists
//! and is enabled, resolves a sqlite path inside the allowed directories, opens the sealed
//! credential of a PostgreSQL server. Also runs classified statements with the scope rules that
//! every SQL tool shares.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::pool::EnginePool;
use super::{Class, EngineError, Flavor, Limits, QueryResult, classify, paths, postgres, sqlite};
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
    app: &Arc<App>,
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

/// Refuses a statement class the call may not run.
pub fn permit(
    class: Class,
    reason: &str,
    allow_write: bool,
    scopes: Option<&Scopes>,
) -> Result<(), EngineError> {
    match class {
        Class::Dangerous if !Scopes::dangerous_sql_allowed(scopes) => {
            Err(EngineError::Refused(format!(
                "Refused: this statement is classed Dangerous ({reason}); it needs an API key whose scopes include \"dangerousSql\": true"
            )))
        }
        Class::Moderate | Class::Dangerous if !allow_write => Err(EngineError::Refused(
            "Refused: this statement changes data; pass allowWrite: true to run it".into(),
        )),
        _ => Ok(()),
    }
}

/// Classifies and runs one statement on a sqlite file (blocking work on the engine's threads).
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
    permit(v.class, &v.reason, allow_write, scopes)?;
    let writable = target.writable && v.class != Class::Safe;
    pool.run(move || {
        let t = sqlite::Target { writable, ..target };
        let conn = sqlite::open(&t, limits)?;
        sqlite::run(&conn, &sql, &params, v.class, limits)
    })
    .await
}

/// Classifies and runs one statement on a PostgreSQL server (holding an engine slot).
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
    permit(v.class, &v.reason, allow_write, scopes)?;
    let _slot = pool.admit().await?;
    let mut client = postgres::connect(target, connect_timeout).await?;
    postgres::run(&mut client, sql, params, &v, limits).await
}
