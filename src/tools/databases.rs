//! `database-*` tools: registered external databases (PostgreSQL servers and SQLite files) and
//! their credentials. Passwords are sealed at rest and never returned.

use std::sync::Arc;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{next_cursor, page};
use crate::app::App;
use crate::engine::registry::{self, Resolved};
use crate::engine::{EngineError, paths, postgres, sqlite};
use crate::mcp::tool::{Annotations, Tool, ToolCtx, ToolError};
use crate::store::databases::{self, Credential, Database};

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
            "Register an external database. `dialect` is `postgresql` (default; needs `host`, `port` default \
             5432, `databaseName`) or `sqlite` (`databaseName` is the file path: relative paths live under \
             <data-dir>/databases/, absolute ones must be inside a directory listed in engine.sqlite_dirs). \
             `id` is letters, digits and _.",
            Annotations::CREATE,
            db_create,
        ),
        Tool::typed(
            "database-update",
            "Update a database",
            "Change fields of a registered database. Changing where it points (host, port, databaseName \
             or dialect) removes its stored credentials, so a password is never sent to a new target: \
             save them again with database-credential-save.",
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
    /// Page size, 1–1000 (default 100).
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<u32>,
    /// Opaque cursor from a previous page's `nextCursor`.
    pub cursor: Option<String>,
}

/// Result of `database-list`.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabasePage {
    pub databases: Vec<Database>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Refuses a database outside the calling key's `endpoints` scope. Every tool that reads,
/// changes or tests a registered database, or its credentials, goes through this.
fn in_scope(ctx: &ToolCtx, id: &str) -> Result<(), ToolError> {
    match &ctx.call.principal.scopes {
        Some(s) if !s.allows_endpoint(id) => {
            Err(ToolError::Failed(crate::auth::scopes::database_refusal(id)))
        }
        _ => Ok(()),
    }
}

/// Where a database points, comparable across registrations: a SQLite file by its real path;
/// a PostgreSQL server by the addresses its host name resolves to (every loopback address is
/// one place: `localhost`, `127.0.0.1`, `127.1`, `::1`), its port and database name.
#[derive(PartialEq)]
enum Place {
    File(std::path::PathBuf),
    Server {
        addrs: Vec<String>,
        port: i64,
        database: String,
    },
}

async fn place_of(app: &App, d: &Database) -> Option<Place> {
    if d.dialect == "sqlite" {
        let p = paths::resolve_sqlite(&app.config, &d.database_name, "databaseName").ok()?;
        return Some(Place::File(std::fs::canonicalize(&p).unwrap_or(p)));
    }
    let host = d
        .host
        .clone()
        .unwrap_or_default()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let port = d.port.unwrap_or(5432);
    let resolved = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::lookup_host((host.as_str(), port as u16)),
    )
    .await;
    let mut addrs: Vec<String> = match resolved {
        Ok(Ok(it)) => it.map(|a| place_of_ip(a.ip())).collect(),
        _ => vec![host.clone()],
    };
    addrs.sort();
    addrs.dedup();
    Some(Place::Server {
        addrs,
        port,
        database: d.database_name.clone(),
    })
}

/// An address as a place: IPv4-mapped IPv6 as IPv4; every loopback address, and the unspecified
/// one (which connects to this host), as one place `loopback`.
fn place_of_ip(ip: std::net::IpAddr) -> String {
    let ip = match ip {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(std::net::IpAddr::V4)
            .unwrap_or(std::net::IpAddr::V6(v6)),
        v4 => v4,
    };
    if ip.is_loopback() || ip.is_unspecified() {
        "loopback".to_string()
    } else {
        ip.to_string()
    }
}

fn same_place(a: &Place, b: &Place) -> bool {
    match (a, b) {
        (Place::File(x), Place::File(y)) => x == y,
        (
            Place::Server {
                addrs: a1,
                port: p1,
                database: d1,
            },
            Place::Server {
                addrs: a2,
                port: p2,
                database: d2,
            },
        ) => p1 == p2 && d1 == d2 && a1.iter().any(|x| a2.contains(x)),
        _ => false,
    }
}

/// A key limited to some databases may not point one of them at what another database, outside
/// its scope, points at (a file or a server it could then read through its own id).
async fn not_anothers_target(ctx: &ToolCtx, d: &Database) -> Result<(), ToolError> {
    let Some(scopes) = ctx.call.principal.scopes.clone() else {
        return Ok(());
    };
    if scopes.endpoints.is_none() {
        return Ok(());
    }
    let all = ctx.app.store.run(|c| databases::all(c)).await?;
    let Some(mine) = place_of(&ctx.app, d).await else {
        return Ok(());
    };
    for o in all
        .iter()
        .filter(|o| o.id != d.id && !scopes.allows_endpoint(&o.id))
    {
        if let Some(theirs) = place_of(&ctx.app, o).await
            && same_place(&mine, &theirs)
        {
            return Err(ToolError::Failed(
                "Refused: this database would point at the same database as one outside this API key's scopes"
                    .into(),
            ));
        }
    }
    Ok(())
}

async fn db_list(ctx: ToolCtx, a: ListArgs) -> Result<DatabasePage, ToolError> {
    let page = page(a.limit, a.cursor.as_deref())?;
    let only = ctx
        .call
        .principal
        .scopes
        .as_ref()
        .and_then(|s| s.endpoints.clone());
    let p = ctx
        .app
        .store
        .run(move |c| databases::list(c, a.search.as_deref(), only.as_deref(), &page))
        .await?;
    Ok(DatabasePage {
        databases: p.items,
        next_cursor: next_cursor(p.next),
    })
}

/// Database dialects.
#[derive(Deserialize, JsonSchema, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// PostgreSQL (`postgres` is accepted too).
    #[default]
    #[serde(alias = "postgres")]
    Postgresql,
    Sqlite,
}

impl Dialect {
    fn as_str(self) -> &'static str {
        match self {
            Dialect::Postgresql => "postgresql",
            Dialect::Sqlite => "sqlite",
        }
    }
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
}

/// Checks a database definition; messages name the field.
fn validate(app: &App, d: &Database) -> Result<(), ToolError> {
    let id_ok = !d.id.is_empty()
        && d.id.len() <= 63
        && d.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !["main", "temp"].contains(&d.id.to_ascii_lowercase().as_str());
    if !id_ok {
        return Err(ToolError::field(
            "id",
            "must be letters, digits and _ (at most 63; not main or temp)",
        ));
    }
    if d.database_name.trim().is_empty() {
        return Err(ToolError::field("databaseName", "must not be empty"));
    }
    if d.dialect == "postgresql" {
        let host = d.host.as_deref().unwrap_or("");
        if host.is_empty()
            || host.len() > 255
            || host
                .chars()
                .any(|c| c.is_whitespace() || c == '/' || c == '@')
        {
            return Err(ToolError::field(
                "host",
                "must be a host name or address for a postgresql database",
            ));
        }
        if !(1..=65535).contains(&d.port.unwrap_or(5432)) {
            return Err(ToolError::field("port", "must be between 1 and 65535"));
        }
    } else {
        let p = paths::resolve_sqlite(&app.config, &d.database_name, "databaseName")?;
        paths::check_sqlite_file(&p, "databaseName")?;
    }
    Ok(())
}

async fn db_create(ctx: ToolCtx, a: CreateArgs) -> Result<Database, ToolError> {
    let pg = a.dialect == Dialect::Postgresql;
    let d = Database {
        id: a.id,
        host: a.host.map(|h| h.trim().to_string()),
        port: if pg {
            Some(a.port.unwrap_or(5432))
        } else {
            a.port
        },
        database_name: a.database_name,
        dialect: a.dialect.as_str().into(),
        description: a.description,
        enabled: a.enabled.unwrap_or(true),
        created_at: String::new(),
        updated_at: String::new(),
    };
    validate(&ctx.app, &d)?;
    in_scope(&ctx, &d.id)?;
    not_anothers_target(&ctx, &d).await?;
    let created = ctx.app.store.run(move |c| databases::insert(c, &d)).await?;
    ctx.app.database_changed();
    Ok(created)
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
}

async fn db_update(ctx: ToolCtx, a: UpdateArgs) -> Result<Database, ToolError> {
    if a.host.is_none()
        && a.port.is_none()
        && a.database_name.is_none()
        && a.dialect.is_none()
        && a.description.is_none()
        && a.enabled.is_none()
    {
        return Err(ToolError::Failed("No fields to update".into()));
    }
    in_scope(&ctx, &a.id)?;
    let id = a.id.clone();
    let mut d = ctx
        .app
        .store
        .run(move |c| databases::get(c, &id))
        .await?
        .ok_or_else(|| ToolError::Failed("Database not found".into()))?;
    let target = |d: &Database| {
        (
            d.host.clone(),
            d.port,
            d.database_name.clone(),
            d.dialect.clone(),
        )
    };
    let before = target(&d);
    if let Some(h) = a.host {
        d.host = Some(h.trim().to_string());
    }
    if let Some(p) = a.port {
        d.port = Some(p);
    }
    if let Some(n) = a.database_name {
        d.database_name = n;
    }
    if let Some(x) = a.dialect {
        d.dialect = x.as_str().into();
    }
    if let Some(x) = a.description {
        d.description = Some(x);
    }
    if let Some(e) = a.enabled {
        d.enabled = e;
    }
    validate(&ctx.app, &d)?;
    let moved = target(&d) != before;
    if moved {
        not_anothers_target(&ctx, &d).await?;
    }
    let updated = ctx
        .app
        .store
        .run(move |c| {
            let tx = c.transaction()?;
            let updated = databases::update(&tx, &d)?;
            if moved {
                databases::delete_credentials(&tx, &d.id)?;
            }
            tx.commit()?;
            Ok(updated)
        })
        .await?
        .ok_or_else(|| ToolError::Failed("Database not found".into()))?;
    ctx.app.database_changed();
    Ok(updated)
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
    in_scope(&ctx, &a.id)?;
    let id = a.id.clone();
    if !ctx
        .app
        .store
        .run(move |c| databases::delete(c, &id))
        .await?
    {
        return Err(ToolError::Failed("Database not found".into()));
    }
    ctx.app.database_changed();
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
    in_scope(&ctx, &a.database_id)?;
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
                        "SELECT 1, sqlite_version()",
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
    if a.username.trim().is_empty() || a.username.len() > 128 {
        return Err(ToolError::field("username", "must be 1 to 128 characters"));
    }
    in_scope(&ctx, &a.database_id)?;
    let sealed = ctx.app.master.seal(
        &a.password,
        &registry::credential_aad(&a.database_id, &a.username),
    );
    let (cred, _) = ctx
        .app
        .store
        .run(move |c| {
            if databases::get(c, &a.database_id)?.is_none() {
                return Err(crate::Error::NotFound("Database not found".into()));
            }
            databases::save_credential(
                c,
                &a.database_id,
                &a.username,
                &sealed,
                a.user_scope.as_deref(),
                a.service_scope.as_deref(),
            )
        })
        .await?;
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
    let scopes = ctx.call.principal.scopes.clone();
    let deleted = ctx
        .app
        .store
        .run(move |c| {
            let Some(db) = databases::credential_database(c, &a.credential_id)? else {
                return Ok(false);
            };
            // outside the key's scope it is not there for this key
            if scopes.as_ref().is_some_and(|s| !s.allows_endpoint(&db)) {
                return Ok(false);
            }
            databases::delete_credential(c, &a.credential_id)
        })
        .await?;
    if !deleted {
        return Err(ToolError::Failed("Credential not found".into()));
    }
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
    in_scope(&ctx, &a.database_id)?;
    let app: Arc<App> = ctx.app.clone();
    let creds = app
        .store
        .run(move |c| {
            if databases::get(c, &a.database_id)?.is_none() {
                return Err(crate::Error::NotFound("Database not found".into()));
            }
            databases::credentials(c, &a.database_id)
        })
        .await?;
    Ok(CredList { credentials: creds })
}
