//! `database-*` tools: registered external databases (PostgreSQL servers and SQLite files) and
//! their credentials. Passwords are sealed at rest and never returned.

use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::page_of;
use crate::engine::registry::{self, Resolved};
use crate::engine::{EngineError, postgres, sqlite};
use crate::mcp::tool::{Annotations, Tool, ToolCtx, ToolError};
use crate::ops;
use crate::ops::databases::Dialect;
use crate::store::databases::{Credential, Database};

/// The tools of this group.
pub fn tools() -> Vec<Tool> {
    vec![
        Tool::typed(
            "database-list",
            "List databases",
            "List registered databases (never credentials); `search` matches id, host, name or description \
             literally. Paginated.",
            Annotations::READ,
            db_list,
        ),
        Tool::typed(
            "database-create",
            "Register a database",
            "Register an external database: `postgresql` (`host`, `port`, `databaseName`) or \
             `sqlite` (`databaseName` is the file: relative under <data-dir>/databases/, absolute \
             only inside engine.sqlite_dirs).",
            Annotations::CREATE,
            db_create,
        ),
        Tool::typed(
            "database-update",
            "Update a database",
            "Change fields of a registered database. Pointing it elsewhere (host, port, \
             databaseName or dialect) removes its stored credentials, so no password reaches a new \
             target: save them again.",
            Annotations::UPDATE,
            db_update,
        ),
        Tool::typed(
            "database-delete",
            "Delete a database",
            "Unregister a database; its credentials are deleted with it. The data itself is not touched.",
            Annotations::DESTROY,
            db_delete,
        ),
        {
            let mut t = Tool::typed(
                "database-test-connection",
                "Test a database connection",
                "Connect to a registered database and run SELECT 1 (5 s timeout by default); reports the \
                 server version. A disabled database is refused.",
                Annotations::READ,
                db_test,
            );
            t.annotations.open_world = true;
            t
        },
        Tool::typed(
            "database-credential-save",
            "Save a database credential",
            "Save (create or replace, per database and username) a credential. The password is sealed at \
             rest and never shown again. `userScope` and `serviceScope` are optional.",
            Annotations::UPDATE,
            cred_save,
        ),
        Tool::typed(
            "database-credential-delete",
            "Delete a database credential",
            "Delete a credential by id (see database-credential-list).",
            Annotations::DESTROY,
            cred_delete,
        ),
        Tool::typed(
            "database-credential-list",
            "List database credentials",
            "List the credentials of a database: ids, usernames and scopes, never passwords.",
            Annotations::READ,
            cred_list,
        ),
    ]
}

/// Arguments of `database-list`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListArgs {
    pub search: Option<String>,
    // the page size: the schema's default, minimum and maximum say it all
    #[schemars(range(min = 1, max = 1000), extend("default" = 100))]
    pub limit: Option<u32>,
    /// From `nextCursor`.
    pub cursor: Option<String>,
}

page_of!(
    /// Result of `database-list`.
    DatabasePage,
    databases: Database
);

async fn db_list(ctx: ToolCtx, a: ListArgs) -> Result<DatabasePage, ToolError> {
    let page = ops::page(a.limit, a.cursor.as_deref())?;
    Ok(ops::databases::list(&ctx.app, &ctx.actor, a.search, page)
        .await?
        .into())
}

/// Arguments of `database-create`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateArgs {
    /// Letters, digits and _ (not `main` or `temp`).
    pub id: String,
    /// PostgreSQL host name or address (omit for sqlite).
    pub host: Option<String>,
    /// PostgreSQL port (default 5432).
    pub port: Option<i64>,
    /// PostgreSQL database name, or the sqlite file path.
    pub database_name: String,
    /// `postgresql` (default) or `sqlite`.
    #[serde(default)]
    pub dialect: Dialect,
    pub description: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
    /// Directory of its `V<n>__<name>.sql` files: relative to <data-dir>/migrations/, or absolute
    /// inside engine.sqlite_dirs.
    pub migrations_dir: Option<String>,
}

async fn db_create(ctx: ToolCtx, a: CreateArgs) -> Result<Database, ToolError> {
    let new = ops::databases::NewDatabase {
        id: a.id,
        host: a.host,
        port: a.port,
        database_name: a.database_name,
        dialect: a.dialect,
        description: a.description,
        enabled: a.enabled,
        migrations_dir: a.migrations_dir,
    };
    Ok(ops::databases::create(&ctx.app, &ctx.actor, new).await?)
}

/// Arguments of `database-update`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateArgs {
    pub id: String,
    pub host: Option<String>,
    pub port: Option<i64>,
    pub database_name: Option<String>,
    pub dialect: Option<Dialect>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    /// Directory of its versioned migration files; `""` removes it.
    pub migrations_dir: Option<String>,
}

async fn db_update(ctx: ToolCtx, a: UpdateArgs) -> Result<Database, ToolError> {
    let changes = ops::databases::Changes {
        host: a.host,
        port: a.port,
        database_name: a.database_name,
        dialect: a.dialect,
        description: a.description,
        enabled: a.enabled,
        migrations_dir: a.migrations_dir,
    };
    Ok(ops::databases::update(&ctx.app, &ctx.actor, &a.id, changes).await?)
}

/// Arguments naming a database by `id`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IdArgs {
    pub id: String,
}

/// A plain confirmation.
#[derive(Serialize, JsonSchema)]
pub struct Done {
    pub message: String,
}

async fn db_delete(ctx: ToolCtx, a: IdArgs) -> Result<Done, ToolError> {
    ops::databases::delete(&ctx.app, &ctx.actor, &a.id).await?;
    Ok(Done {
        message: format!("Database '{}' deleted", a.id),
    })
}

/// Arguments naming a database by `databaseId`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DatabaseIdArgs {
    pub database_id: String,
}

/// Result of `database-test-connection`.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tested {
    pub message: String,
    pub dialect: String,
    pub server_version: String,
    pub elapsed_ms: u64,
}

async fn db_test(ctx: ToolCtx, a: DatabaseIdArgs) -> Result<Tested, ToolError> {
    ops::databases::in_scope(&ctx.actor, &a.database_id)?;
    let (db, resolved) = registry::lookup(&ctx.app, &a.database_id, true).await?;
    let started = Instant::now();
    let timeout = Duration::from_secs(ctx.app.config.engine.connect_timeout_secs);
    let version = match resolved {
        Resolved::Postgres(t) => postgres::ping(&t, timeout).await?,
        Resolved::Sqlite(path) => {
            let limits = registry::limits(&ctx.app);
            ctx.app
                .engine
                .run(move || -> Result<String, EngineError> {
                    let conn = sqlite::open(
                        &sqlite::Target {
                            path,
                            attach: vec![],
                            writable: false,
                        },
                        limits,
                    )
                    .map_err(|e| EngineError::Connect(format!("Connection failed: {e}")))?;
                    let r = sqlite::run(
                        &conn,
                        crate::engine::catalog::SQLITE_PING,
                        &[],
                        crate::engine::Class::Safe,
                        limits,
                    )?;
                    Ok(r.rows[0][1].as_str().unwrap_or("").to_string())
                })
                .await?
        }
    };
    Ok(Tested {
        message: "Connection successful".into(),
        dialect: db.dialect,
        server_version: version,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

/// Arguments of `database-credential-save`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CredSaveArgs {
    pub database_id: String,
    pub username: String,
    /// Sealed at rest; never shown again.
    pub password: String,
    pub user_scope: Option<String>,
    pub service_scope: Option<String>,
}

/// Result of `database-credential-save`.
#[derive(Serialize, JsonSchema)]
pub struct CredSaved {
    pub message: String,
    pub credential: Credential,
}

async fn cred_save(ctx: ToolCtx, a: CredSaveArgs) -> Result<CredSaved, ToolError> {
    let new = ops::databases::NewCredential {
        database_id: a.database_id,
        username: a.username,
        password: a.password,
        user_scope: a.user_scope,
        service_scope: a.service_scope,
    };
    let cred = ops::databases::save_credential(&ctx.app, &ctx.actor, new).await?;
    Ok(CredSaved {
        message: format!("Credentials saved for database '{}'", cred.database_id),
        credential: cred,
    })
}

/// Arguments of `database-credential-delete`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CredDeleteArgs {
    pub credential_id: String,
}

async fn cred_delete(ctx: ToolCtx, a: CredDeleteArgs) -> Result<Done, ToolError> {
    ops::databases::delete_credential(&ctx.app, &ctx.actor, &a.credential_id).await?;
    Ok(Done {
        message: "Credential deleted".into(),
    })
}

/// Result of `database-credential-list`.
#[derive(Serialize, JsonSchema)]
pub struct CredList {
    pub credentials: Vec<Credential>,
}

async fn cred_list(ctx: ToolCtx, a: DatabaseIdArgs) -> Result<CredList, ToolError> {
    let credentials = ops::databases::credentials(&ctx.app, &ctx.actor, &a.database_id).await?;
    Ok(CredList { credentials })
}
